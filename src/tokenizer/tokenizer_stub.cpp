// Placeholder until the tokenizers land; replaced by the real implementation.
#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_files.h"
namespace elutq {
struct Tokenizer::Impl { TokenizerSpec spec; };
Tokenizer::Tokenizer(const TokenizerSpec& s) : impl_(new Impl{s}) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
std::vector<int> Tokenizer::encode(std::string_view, bool, bool) const { fail("tokenizer not built yet"); }
std::string Tokenizer::decode(const std::vector<int>&, bool) const { fail("tokenizer not built yet"); }
std::string Tokenizer::token_bytes(int id, bool) const { return impl_->spec.tokens.at(id); }
int Tokenizer::vocab_size() const { return int(impl_->spec.tokens.size()); }
int Tokenizer::bos_id() const { return impl_->spec.bos_id; }
int Tokenizer::eos_id() const { return impl_->spec.eos_id; }
bool Tokenizer::is_stop(int id) const { return id == impl_->spec.eos_id; }
const TokenizerSpec& Tokenizer::spec() const { return impl_->spec; }
TokenizerSpec load_hf_tokenizer(const std::string& f) { fail("tokenizer.json not supported yet: ", f); }
TokenizerSpec load_sentencepiece_model(const std::string& p) { fail("tokenizer.model not supported yet: ", p); }
}  // namespace elutq
