// Reading the files a user names (models, texts, JSON): a failure says why (permission denied,
// a folder, a device), and nothing reads forever: devices such as /dev/zero and named pipes are
// refused where a file is mapped or probed, and whole-file reads stop at a bound.
#pragma once

#include <cstdint>
#include <string>

namespace elutq {

// Texts and JSON files larger than this are refused (a corpus of 4 GiB is not a calibration file).
inline constexpr uint64_t kMaxInputFileBytes = uint64_t(4) << 30;

// Throws Error (naming `what`, e.g. "model", and the path) unless `path` is a regular file this
// process may read: it does not exist, is a folder, a named pipe, a device or a socket, or cannot
// be opened (with the system's reason, e.g. "Permission denied"). Never blocks.
void require_readable_file(const std::string& path, const std::string& what);

// The whole of a regular file (require_readable_file, then at most max_bytes). Throws Error.
std::string read_input_file(const std::string& path, const std::string& what,
                            uint64_t max_bytes = kMaxInputFileBytes);

}  // namespace elutq
