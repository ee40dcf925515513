// Checkpointed, resumable block-by-block quantization; see resume_driver.h.
#include "quant/resume_driver.h"

#include <cstdio>
#include <sstream>
#include <utility>

#include "core/error.h"
#include "core/memory_usage.h"
#include "quant/activation_store.h"
#include "tensor/tensor_names.h"

namespace elutq {
namespace {

bool in_block(const std::string& name, int l) { return block_index(name) == l; }

// Passes every tensor on to the real sink and keeps a copy of the decoder-block ones, which make
// up the finished block's checkpoint.
class RecordingSink final : public QuantizedTensorSink {
 public:
  explicit RecordingSink(QuantizedTensorSink& inner) : inner_(inner) {}
  void add_quantized(const std::string& name, const QuantizedMatrix& q) override {
    inner_.add_quantized(name, q);
    if (!is_block_tensor(name)) return;
    CheckpointTensor t;
    t.name = name;
    t.kind = CheckpointTensor::Kind::Quantized;
    t.q = q;
    cp_.tensors.push_back(std::move(t));
  }
  void add_unchanged(const TensorInfo& t) override {
    inner_.add_unchanged(t);
    if (!is_block_tensor(t.name)) return;
    CheckpointTensor c;
    c.name = t.name;
    c.kind = CheckpointTensor::Kind::Unchanged;
    cp_.tensors.push_back(std::move(c));
  }
  void add_f32(const TensorInfo& like, const float* data) override {
    inner_.add_f32(like, data);
    if (!is_block_tensor(like.name)) return;
    CheckpointTensor c;
    c.name = like.name;
    c.kind = CheckpointTensor::Kind::F32;
    c.shape = like.shape;
    c.data.assign(data, data + like.numel());
    cp_.tensors.push_back(std::move(c));
  }
  // The block's tensors so far, handed over (and forgotten).
  BlockCheckpoint take() { return std::exchange(cp_, BlockCheckpoint{}); }

 private:
  static bool is_block_tensor(const std::string& name) { return block_index(name) >= 0; }
  QuantizedTensorSink& inner_;
  BlockCheckpoint cp_;
};

// Report lines of one block as text (tab-separated, one line each; logs with their newlines and
// tabs escaped) and back. The format is the last field; checkpoints written before it was kept
// have 8 fields and give their lines an empty format.
std::string escape(const std::string& s) {
  std::string r;
  for (char c : s) {
    if (c == '\\') r += "\\\\";
    else if (c == '\n') r += "\\n";
    else if (c == '\t') r += "\\t";
    else r += c;
  }
  return r;
}
std::string unescape(const std::string& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      const char c = s[++i];
      r += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else {
      r += s[i];
    }
  }
  return r;
}

}  // namespace

std::string report_lines_text(const std::vector<LayerReport>& lines) {
  std::string s;
  char buf[256];
  for (const auto& r : lines) {
    std::snprintf(buf, sizeof buf, "\t%lld\t%lld\t%.17g\t%.17g\t%.17g\t%.17g\t",
                  (long long)r.rows, (long long)r.cols, r.rel_weight_error, r.rel_output_error,
                  r.bits_per_weight, r.seconds);
    s += escape(r.name) + buf + escape(r.log) + "\t" + escape(r.format) + "\n";
  }
  return s;
}

std::vector<LayerReport> parse_report_lines(const std::string& text) {
  std::vector<LayerReport> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    size_t a = 0;
    for (size_t b; (b = line.find('\t', a)) != std::string::npos; a = b + 1) f.push_back(line.substr(a, b - a));
    f.push_back(line.substr(a));
    if (f.size() != 8 && f.size() != 9) continue;  // notes we did not write; ignore
    LayerReport r;
    r.name = unescape(f[0]);
    r.rows = std::stoll(f[1]);
    r.cols = std::stoll(f[2]);
    r.rel_weight_error = std::stod(f[3]);
    r.rel_output_error = std::stod(f[4]);
    r.bits_per_weight = std::stod(f[5]);
    r.seconds = std::stod(f[6]);
    r.log = unescape(f[7]);
    if (f.size() == 9) r.format = unescape(f[8]);
    out.push_back(std::move(r));
  }
  return out;
}

QuantReport run_resumable(BlockwiseQuantizer& q, const ModelSource& src,
                              ActivationStore* store, QuantizedTensorSink& sink,
                              const ResumableRunOptions& opt,
                              const std::function<void()>& finish_output) {
  const int n_layers = src.config().n_layers;
  if (opt.restart) ResumeDir::discard(opt.out_path);
  ResumeDir rd(opt.out_path, opt.manifest, n_layers);
  const int first = rd.finished_blocks();
  std::vector<LayerReport> replayed;
  if (first > 0) {
    if (opt.on_resume) opt.on_resume(first);
    q.emit_head(sink);
    for (int l = 0; l < first; ++l) {
      const BlockCheckpoint cp = rd.load_block(l);
      for (const CheckpointTensor& t : cp.tensors) {
        require(in_block(t.name, l), "checkpoint of block ", l, " holds '", t.name,
                "'; the work directory '", rd.path(), "' is damaged, delete it to start over");
        if (t.kind == CheckpointTensor::Kind::Quantized) {
          sink.add_quantized(t.name, t.q);
          continue;
        }
        const TensorInfo* info = src.find(t.name);
        require(info != nullptr, "checkpoint of block ", l, " names '", t.name,
                "', which the model does not have; delete '", rd.path(), "' to start over");
        if (t.kind == CheckpointTensor::Kind::F32) {
          require(int64_t(t.data.size()) == info->numel(), "checkpoint tensor '", t.name,
                  "' does not match the model's shape");
          sink.add_f32(*info, t.data.data());
        } else {
          sink.add_unchanged(*info);
        }
        src.release_pages(*info);
      }
      for (auto& r : parse_report_lines(cp.notes)) replayed.push_back(std::move(r));
    }
    if (store) rd.load_activations(*store);
  }

  RecordingSink rec(sink);
  size_t reported = q.report().layers.size();
  QuantReport rep = q.run(
      store, rec,
      [&](int l) {
        BlockCheckpoint cp = rec.take();
        const auto& lines = q.report().layers;
        std::vector<LayerReport> mine(lines.begin() + std::ptrdiff_t(reported), lines.end());
        reported = lines.size();
        cp.notes = report_lines_text(mine);
        rd.save_block(l, cp, store);
        return_free_heap_to_os();  // the block's freed weights and Hessians
        if (opt.after_checkpoint) opt.after_checkpoint(l);
      },
      first);
  if (finish_output) finish_output();
  rd.remove();

  for (const auto& r : replayed) rep.add_totals(r);
  rep.layers.insert(rep.layers.begin(), replayed.begin(), replayed.end());
  return rep;
}

}  // namespace elutq
