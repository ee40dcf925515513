// Work directory and manifest of resumable quantization; see resume.h.
#include "quant/resume.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "quant/activation_store.h"
#include "quant/resume_checkpoint.h"

namespace elutq {
namespace fs = std::filesystem;

// ---- manifest -----------------------------------------------------------------------------------

void RunManifest::set(const std::string& key, const std::string& value) {
  require(key.find_first_of("=\n") == std::string::npos && value.find('\n') == std::string::npos,
          "manifest key '", key, "' or its value contains '=' or a newline");
  for (auto& e : entries_) {
    if (e.first == key) {
      e.second = value;
      return;
    }
  }
  entries_.emplace_back(key, value);
}

std::string RunManifest::text() const {
  std::string s;
  for (const auto& [k, v] : entries_) s += k + "=" + v + "\n";
  return s;
}

RunManifest RunManifest::parse(const std::string& text, const std::string& where) {
  RunManifest m;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    const size_t eq = line.find('=');
    require(eq != std::string::npos && eq > 0, "'", where, "' line ", n,
            " is not key=value; the work directory is damaged, delete it to start over");
    m.set(line.substr(0, eq), line.substr(eq + 1));
  }
  return m;
}

std::string RunManifest::difference_from(const RunManifest& saved) const {
  for (const auto& [k, v] : entries_) {
    const auto it = std::find_if(saved.entries_.begin(), saved.entries_.end(),
                                 [&](const auto& e) { return e.first == k; });
    if (it == saved.entries_.end()) return k + " is new in this run (value '" + v + "')";
    if (it->second != v)
      return k + " was '" + it->second + "' in the interrupted run and is '" + v + "' now";
  }
  for (const auto& [k, v] : saved.entries_) {
    const bool here = std::any_of(entries_.begin(), entries_.end(),
                                  [&](const auto& e) { return e.first == k; });
    if (!here) return k + " ('" + v + "') was set in the interrupted run and is not now";
  }
  return "";
}

std::string file_identity(const std::string& path) {
  std::error_code ec;
  require(fs::exists(path, ec), "'", path, "' does not exist");
  auto one = [](const fs::path& p) {
    struct stat st {};
    require(::stat(p.c_str(), &st) == 0, "cannot stat '", p.string(), "': ", std::strerror(errno));
    return fs::absolute(p).lexically_normal().string() + " size=" + std::to_string(st.st_size) +
           " mtime=" + std::to_string(int64_t(st.st_mtim.tv_sec)) + "." +
           std::to_string(int64_t(st.st_mtim.tv_nsec));
  };
  if (!fs::is_directory(path, ec)) return one(path);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string s;
  for (const auto& f : files) s += (s.empty() ? "" : "; ") + one(f);
  return s;
}

// ---- work directory -----------------------------------------------------------------------------

std::string ResumeDir::dir_for(const std::string& out_path) { return out_path + ".elutq-work"; }

void ResumeDir::discard(const std::string& out_path) {
  std::error_code ec;
  fs::remove_all(dir_for(out_path), ec);
}

std::string ResumeDir::block_path(int layer) const {
  return dir_ + "/block-" + std::to_string(layer) + ".ckpt";
}
std::string ResumeDir::acts_path(int layer) const {
  return dir_ + "/acts-" + std::to_string(layer) + ".bin";
}

ResumeDir::ResumeDir(const std::string& out_path, const RunManifest& manifest, int n_blocks)
    : dir_(dir_for(out_path)), n_blocks_(n_blocks) {
  std::error_code ec;
  const std::string mpath = dir_ + "/manifest.txt";
  if (fs::exists(mpath, ec)) {
    const RunManifest saved = RunManifest::parse(read_whole_file(mpath), mpath);
    const std::string diff = manifest.difference_from(saved);
    require(diff.empty(), "'", dir_, "' holds an interrupted run with other settings (", diff,
            "); rerun with the same settings to resume it, or delete that folder (or pass "
            "--restart) to start over");
    // Finished: the longest prefix of checkpoints whose last one has its activations beside it
    // (acts-N.bin is written before block-N.ckpt, and the previous acts removed only after).
    int k = 0;
    while (k < n_blocks_ && fs::exists(block_path(k), ec)) ++k;
    while (k > 0 && !fs::exists(acts_path(k - 1), ec) && !fs::exists(acts_path(k - 1) + ".none", ec))
      --k;
    finished_ = k;
  } else {
    fs::create_directories(dir_, ec);
    require(!ec, "cannot create the work directory '", dir_, "': ", ec.message());
    write_file_atomic(mpath, manifest.text());
  }
}

void ResumeDir::save_block(int layer, const BlockCheckpoint& cp, const ActivationStore* acts) {
  require(layer == finished_, "save_block: block ", layer, " finished out of order (expected ",
          finished_, ")");
  if (acts)
    save_activations(*acts, acts_path(layer));
  else
    write_file_atomic(acts_path(layer) + ".none", "");  // a run without activations
  write_block_checkpoint(block_path(layer), cp);
  std::error_code ec;
  if (layer > 0) {
    fs::remove(acts_path(layer - 1), ec);
    fs::remove(acts_path(layer - 1) + ".none", ec);
  }
  finished_ = layer + 1;
}

BlockCheckpoint ResumeDir::load_block(int layer) const {
  require(layer >= 0 && layer < finished_, "block ", layer, " has no checkpoint");
  return read_block_checkpoint(block_path(layer));
}

void ResumeDir::load_activations(ActivationStore& acts) const {
  require(finished_ > 0, "no finished block, so no activations to resume from");
  elutq::load_activations(acts_path(finished_ - 1), acts);
}

void ResumeDir::remove() {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

}  // namespace elutq
