// llama2.c's tokenizer.bin: the SentencePiece-BPE vocabulary of a llama2.c checkpoint.
#pragma once

#include <string>

#include "tensor/tokenizer_spec.h"

namespace elutq {

// Reads a tokenizer.bin holding exactly vocab_size tokens (int32 max_token_length, then per token
// a float score, an int32 byte length and the bytes). The export wrote spaces as ' ' and BOS/EOS
// as "\n<s>\n" / "\n</s>\n"; the spec gets SentencePiece's own pieces back ("▁", "<s>", "</s>")
// so that it reads like any other SentencePiece vocabulary. Throws Error naming the file on
// anything malformed or on a token count that differs from vocab_size.
TokenizerSpec load_llama2c_tokenizer(const std::string& path, int vocab_size);

}  // namespace elutq
