// See untied_head_source.h.
#include "model/untied_head_source.h"

#include "core/error.h"

namespace elutq {
namespace {

class UntiedHeadSource final : public ModelSource {
 public:
  explicit UntiedHeadSource(std::unique_ptr<ModelSource> inner) : inner_(std::move(inner)) {
    require(inner_->config().tied_embeddings,
            "untie_output_head: the model already has its own output.weight");
    const TensorInfo* emb = inner_->find("token_embd.weight");
    require(emb != nullptr, "the model ties its head to token_embd.weight but has no such tensor");
    require(inner_->find("output.weight") == nullptr,
            "the model says its head is tied but also stores output.weight");
    config_ = inner_->config();
    config_.tied_embeddings = false;
    head_ = *emb;
    head_.name = "output.weight";
  }

  const ModelConfig& config() const override { return config_; }
  const TokenizerSpec& tokenizer() const override { return inner_->tokenizer(); }
  std::vector<std::string> tensor_names() const override {
    std::vector<std::string> names = inner_->tensor_names();
    names.push_back("output.weight");  // stored after every other tensor
    return names;
  }
  const TensorInfo* find(const std::string& name) const override {
    return name == "output.weight" ? &head_ : inner_->find(name);
  }
  std::string format_name() const override { return inner_->format_name(); }
  void release_pages(const TensorInfo& t) const override { inner_->release_pages(t); }

 private:
  std::unique_ptr<ModelSource> inner_;
  ModelConfig config_;
  TensorInfo head_;  // token_embd.weight's bytes under the head's name
};

}  // namespace

std::unique_ptr<ModelSource> untie_output_head(std::unique_ptr<ModelSource> inner) {
  require(inner != nullptr, "untie_output_head: no model");
  return std::make_unique<UntiedHeadSource>(std::move(inner));
}

}  // namespace elutq
