// Calibrated block-by-block quantization (see blockwise_quantizer.h).
#include "quant/blockwise_quantizer.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "model/decoder_block.h"
#include "model/dense_linear.h"
#include "model/model.h"
#include "quant/awq.h"
#include "quant/hessian.h"
#include "quant/rtn.h"
#include "tensor/tensor_names.h"
#include "train/quantized_linear_param.h"

extern "C" void openblas_set_num_threads(int);

namespace elutq {

namespace {

// A group longer than the row would only pad every row with unused weights (a 260K model became
// 1.5 GiB), so it is refused before any work.
void require_group_fits(const QuantSpec& spec, int64_t cols, const std::string& tensor,
                        const std::string& flag) {
  require(spec.group <= cols, flag, ": group ", spec.group, " is longer than the rows of ", tensor,
          " (", cols, " weights); give at most ", cols, ", or 0 for one group per row");
}

// The true-sequential groups: layers sharing one input, in forward order, and the block tap
// where that input is seen.
struct SlotGroup {
  std::vector<LinearSlot> members;
  BlockTap input;
};
const std::vector<SlotGroup>& slot_groups() {
  static const std::vector<SlotGroup> g = {
      {{LinearSlot::Q, LinearSlot::K, LinearSlot::V}, BlockTap::AttnIn},
      {{LinearSlot::O}, BlockTap::OIn},
      {{LinearSlot::Gate, LinearSlot::Up}, BlockTap::FfnIn},
      {{LinearSlot::Down}, BlockTap::DownIn}};
  return g;
}

// A projection whose weights are not in memory: the model is built with these for every block and
// the quantizer swaps real ones in for the block it works on. Running one is a bug in the caller.
class UnloadedLinear : public Linear {
 public:
  UnloadedLinear(std::string name, int64_t out, int64_t in)
      : name_(std::move(name)), out_(out), in_(in) {}
  int64_t in_features() const override { return in_; }
  int64_t out_features() const override { return out_; }
  void forward(const float*, int64_t, float*, ThreadPool&) const override {
    fail("internal: '", name_, "' was run before its block was loaded");
  }
  std::string describe() const override { return "not loaded"; }
  uint64_t weight_bytes() const override { return 0; }

 private:
  std::string name_;
  int64_t out_, in_;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

bool blockwise_needs_calibration(const BlockwiseOptions& opt) {
  return opt.awq || opt.block_ap.has_value() || method_needs_calibration(opt.layer.method);
}

struct BlockwiseQuantizer::Impl {
  const ModelSource& src;
  BlockwiseOptions opt;
  LayerQuantOptions layer;  // what each layer gets (awq -> rtn after the scale search)
  LayerQuantOptions head_layer;  // output.weight's (blockwise_output_layer)
  bool awq = false;
  bool calibrated = false;
  std::vector<std::string> order;
  std::unique_ptr<Model> model;       // built by embed_calibration; no block weights of its own
  std::unique_ptr<ThreadPool> pool;   // when there is no model

  // The loaded block.
  int loaded = -1;
  std::array<std::shared_ptr<std::vector<float>>, kLinearSlots> W;  // (rows, cols) fp32, folded
  std::array<int64_t, kLinearSlots> rows{}, cols{};
  std::array<QuantizedMatrix, kLinearSlots> q;
  std::array<std::string, kLinearSlots> awq_log;
  std::vector<float> attn_norm, ffn_norm;  // (dim) each, as folded
  bool norms_changed = false;
  std::vector<float> buf;  // (tokens, dim) one calibration sequence

  Impl(const ModelSource& s, const BlockwiseOptions& o) : src(s), opt(o) {}

  ThreadPool& threads() { return model ? model->pool() : *pool; }
  int n_layers() const { return src.config().n_layers; }

  void install_dense(int l, LinearSlot s, std::shared_ptr<const std::vector<float>> w) {
    model->set_linear(l, s, std::make_unique<DenseLinear>(std::move(w), rows[int(s)],
                                                          cols[int(s)]));
  }
  void install_fp(int l, LinearSlot s) { install_dense(l, s, W[int(s)]); }
  void install_quantized(int l, LinearSlot s) {
    auto d = std::make_shared<std::vector<float>>(size_t(rows[int(s)] * cols[int(s)]));
    dequantize(q[int(s)], d->data());
    install_dense(l, s, std::move(d));
  }

  // Runs block l over the first n_seqs sequences of the store (all if < 0) in the runtime's
  // chunks; observe sees its sub-layer inputs. Writes the outputs back when write_back; appends
  // them to outputs if given.
  void run_block(int l, CalibActivations& store, int64_t n_seqs, bool write_back,
                 std::vector<float>* outputs, const BlockObserver& observe = {},
                 CalibActivations* output_store = nullptr) {
    const int64_t T = store.tokens(), dim = store.dim();
    if (n_seqs < 0) n_seqs = store.count();
    buf.resize(size_t(T * dim));
    for (int64_t i = 0; i < n_seqs; ++i) {
      store.get(i, buf.data());
      for (int64_t c = 0; c < T; c += model->max_batch()) {
        const int m = int(std::min<int64_t>(model->max_batch(), T - c));
        model->forward_block(l, buf.data() + c * dim, m, int(c), observe);
      }
      if (write_back) store.put(i, buf.data());
      if (outputs) outputs->insert(outputs->end(), buf.begin(), buf.end());
      if (output_store) output_store->put(i, buf.data());
    }
  }

  // A scratch store of (count, tokens, dim) rows: the driver's (may spill to disk) or in memory.
  std::unique_ptr<CalibActivations> make_store(int64_t count, int64_t tokens, int64_t dim) {
    if (opt.make_scratch) return opt.make_scratch(count, tokens, dim);
    return std::make_unique<MemoryCalibActivations>(count, tokens, dim);
  }

  void block_ap(int l, CalibActivations& store, CalibActivations& targets, QuantReport& rep,
                const std::function<void(const std::string&)>& status);

  void awq_block(int l, CalibActivations& store, QuantReport& rep);

  // The attention half of block l (q/k/v quantized) over every sequence: records o's inputs,
  // their Hessian into acc and the rows themselves into att.
  void attention_pass(int l, CalibActivations& store, CalibActivations& att,
                      HessianAccumulator& acc) {
    const int64_t T = store.tokens(), dim = store.dim(), qd = att.dim(), mb = model->max_batch();
    std::vector<float> a(size_t(T * qd));  // (T, q_dim) one sequence's o inputs
    buf.resize(size_t(T * dim));
    for (int64_t i = 0; i < store.count(); ++i) {
      store.get(i, buf.data());
      for (int64_t c = 0; c < T; c += mb) {
        const int m = int(std::min(mb, T - c));
        const float* o_in = model->attention_half(l, buf.data() + c * dim, m, int(c));
        acc.add(o_in, m);
        std::copy(o_in, o_in + m * qd, a.data() + c * qd);
      }
      att.put(i, a.data());
    }
  }

  // The feed-forward half of the loaded block from the recorded o inputs, in the runtime's
  // chunks. Records gate/up's inputs into ffn_in and down's into down_in if given; with
  // write_back the block outputs replace the block inputs in the store. Stops as early as what
  // is asked allows.
  void mlp_pass(CalibActivations& store, CalibActivations& att, HessianAccumulator* ffn_in,
                HessianAccumulator* down_in, bool write_back) {
    const int64_t T = store.tokens(), dim = store.dim(), qd = att.dim(), mb = model->max_batch();
    const std::optional<BlockTap> stop_after =
        write_back ? std::nullopt : std::optional(down_in ? BlockTap::DownIn : BlockTap::FfnIn);
    const BlockObserver observe = [&](BlockTap tap, const float* rows, int64_t n, int64_t) {
      if (tap == BlockTap::FfnIn && ffn_in) ffn_in->add(rows, n);
      if (tap == BlockTap::DownIn && down_in) down_in->add(rows, n);
    };
    buf.resize(size_t(T * dim));
    std::vector<float> a(size_t(T * qd));  // (T, q_dim)
    for (int64_t i = 0; i < store.count(); ++i) {
      store.get(i, buf.data());
      att.get(i, a.data());
      for (int64_t c = 0; c < T; c += mb) {
        const int m = int(std::min(mb, T - c));
        model->ffn_half(loaded, buf.data() + c * dim, a.data() + c * qd, m, observe, stop_after);
      }
      if (write_back) store.put(i, buf.data());
    }
  }

  // The feed-forward half up to down's inputs (gate and up quantized), once: their Hessian goes into
  // acc, the rows themselves into down_in, and the store's block inputs are replaced by the
  // residual stream after attention, so down_pass can finish the block from them without running
  // gate and up again (a third of a block's forward work).
  void down_inputs_pass(CalibActivations& store, CalibActivations& att, HessianAccumulator& acc,
                        CalibActivations& down_in) {
    const int64_t T = store.tokens(), dim = store.dim(), qd = att.dim(), hidden = down_in.dim(),
                  mb = model->max_batch();
    std::vector<float> a(size_t(T * qd)), d(size_t(T * hidden));  // (T, q_dim), (T, hidden)
    int64_t c = 0;  // the chunk's first token
    const BlockObserver observe = [&](BlockTap tap, const float* rows, int64_t n, int64_t) {
      if (tap != BlockTap::DownIn) return;
      acc.add(rows, n);
      std::copy(rows, rows + n * hidden, d.data() + c * hidden);
    };
    buf.resize(size_t(T * dim));
    for (int64_t i = 0; i < store.count(); ++i) {
      store.get(i, buf.data());
      att.get(i, a.data());
      for (c = 0; c < T; c += mb) {
        const int m = int(std::min(mb, T - c));
        model->ffn_half(loaded, buf.data() + c * dim, a.data() + c * qd, m, observe,
                        BlockTap::DownIn);
      }
      store.put(i, buf.data());  // x + o(attention): the residual stream down adds to
      down_in.put(i, d.data());
    }
  }

  // Finishes the block from down_inputs_pass's results with down quantized: the outputs (the
  // residual stream plus down's output, by the runtime's own last step in its chunks, so they equal
  // a full pass bit for bit) replace the store's rows.
  void down_pass(CalibActivations& store, CalibActivations& down_in) {
    const int64_t T = store.tokens(), dim = store.dim(), hidden = down_in.dim(),
                  mb = model->max_batch();
    std::vector<float> d(size_t(T * hidden));  // (T, hidden)
    buf.resize(size_t(T * dim));
    for (int64_t i = 0; i < store.count(); ++i) {
      store.get(i, buf.data());
      down_in.get(i, d.data());
      for (int64_t c = 0; c < T; c += mb)
        model->add_down(loaded, d.data() + c * hidden, int(std::min(mb, T - c)), buf.data() + c * dim);
      store.put(i, buf.data());
    }
  }

  // q/k/v's input is the attention RMSNorm of the block input: recorded straight from the store,
  // no forward pass needed.
  void collect_block_input(CalibActivations& store, HessianAccumulator& acc) {
    const int64_t T = store.tokens(), dim = store.dim();
    const DecoderBlock& block = model->block(loaded);
    buf.resize(size_t(T * dim));
    std::vector<float> xn(size_t(T * dim));  // (T, dim)
    for (int64_t i = 0; i < store.count(); ++i) {
      store.get(i, buf.data());
      block.attn_input(buf.data(), T, xn.data());
      // In the runtime's chunks, so the accumulated sums match a forward pass exactly.
      for (int64_t c = 0; c < T; c += model->max_batch())
        acc.add(xn.data() + c * dim, std::min<int64_t>(model->max_batch(), T - c));
    }
  }
};

LayerQuantOptions blockwise_layer_for(const BlockwiseOptions& opt, const std::string& name) {
  LayerQuantOptions l = opt.layer;
  if (l.method == QuantMethod::Awq) l.method = QuantMethod::Rtn;  // after the scale search
  return layer_options_for(l, opt.tensor_rules, name);
}

LayerQuantOptions blockwise_output_layer(const BlockwiseOptions& opt) {
  LayerQuantOptions l = opt.layer;
  if (l.method == QuantMethod::Awq) l.method = QuantMethod::Rtn;  // AWQ scales are not folded
  if (opt.output_bits) l.bits = *opt.output_bits;                   // into the head
  if (opt.output_group) l.group = *opt.output_group;
  return l;
}

BlockwiseQuantizer::BlockwiseQuantizer(const ModelSource& src, const BlockwiseOptions& opt)
    : impl_(std::make_unique<Impl>(src, opt)) {
  Impl& I = *impl_;
  I.layer = opt.layer;
  I.awq = opt.awq || opt.layer.method == QuantMethod::Awq;
  if (opt.layer.method == QuantMethod::Awq) I.layer.method = QuantMethod::Rtn;
  method_spec(I.layer);  // validates bits / group before any work
  I.head_layer = blockwise_output_layer(opt);
  if (opt.quantize_output) method_spec(I.head_layer);
  require(opt.quantize_output || (!opt.output_bits && !opt.output_group),
          "output head bits / group given but the head is not quantized (--quantize-output)");
  require(opt.awq_grid >= 1, "AWQ grid must be at least 1, got ", opt.awq_grid);
  require(opt.awq_tokens >= 1, "AWQ search tokens must be at least 1, got ", opt.awq_tokens);
  require(!(opt.awq_clip && !I.awq), "AWQ clip search needs AWQ (--method awq or --awq)");
  if (opt.block_ap) {
    const QuantSpec spec = method_spec(I.layer);
    require(trainable_format(spec),
            "Block-AP trains HLQ, HLQC or uniform parameters; ", spec.name(),
            " cannot be finetuned");
    require(!opt.fold_only, "Block-AP and fold_only exclude each other");
  }
  const ModelConfig& c = src.config();
  validate_config(c);
  // Every rule must give a valid width and name at least one block projection (a typo in a
  // pattern would otherwise pass silently).
  for (const TensorSpecRule& r : opt.tensor_rules) {
    try {
      method_spec(with_rule(I.layer, r));
    } catch (const Error& e) {
      throw Error("--tensor-spec '" + r.text + "': " + e.what());
    }
  }
  std::vector<bool> used(opt.tensor_rules.size(), false);
  for (int l = 0; l < c.n_layers; ++l)
    for (LinearSlot s : kAllLinearSlots) {
      const std::string name = linear_weight_name(l, s);
      const int r = matching_rule(opt.tensor_rules, name);
      if (r >= 0) used[size_t(r)] = true;
      const QuantSpec spec =
          method_spec(r < 0 ? I.layer : with_rule(I.layer, opt.tensor_rules[size_t(r)]));
      require_group_fits(spec, linear_shape(c, s).second, name,
                         r < 0 ? "--group" : "--tensor-spec '" + opt.tensor_rules[size_t(r)].text + "'");
      if (opt.block_ap)
        require(trainable_format(spec),
                "Block-AP trains HLQ, HLQC or uniform parameters; ", spec.name(),
                " cannot be finetuned");
    }
  for (size_t r = 0; r < used.size(); ++r)
    require(used[r], "--tensor-spec '", opt.tensor_rules[r].text,
            "' matches no block projection of this model (their names read like ",
            linear_weight_name(0, LinearSlot::Down), "), or an earlier rule takes them all");
  if (opt.quantize_output)
    require_group_fits(method_spec(I.head_layer), c.dim, kOutputName,
                       opt.output_group ? "--output-group" : "--group");
  if (opt.quantize_output)
    require(src.find(kOutputName) != nullptr,
            "this model ties its output head to the token embedding (no output.weight), so the ",
            "head cannot be quantized separately; drop --quantize-output");
  I.order = model_file_order(src.tensor_names());
  // GPTQ and friends were measured 13x faster with OpenBLAS single-threaded inside the pipeline
  // (our pool splits the work); the dense forward sets the same.
  openblas_set_num_threads(1);
  I.pool = std::make_unique<ThreadPool>(opt.n_threads);  // replaced by the model's once built
}

BlockwiseQuantizer::~BlockwiseQuantizer() = default;

void BlockwiseQuantizer::set_make_scratch(
    std::function<std::unique_ptr<CalibActivations>(int64_t, int64_t, int64_t)> fn) {
  impl_->opt.make_scratch = std::move(fn);
}

Model& BlockwiseQuantizer::model() {
  require(impl_->model != nullptr, "internal: the calibration model is built by embed_calibration");
  return *impl_->model;
}

void BlockwiseQuantizer::embed_calibration(const std::vector<std::vector<int>>& seqs,
                                           CalibActivations& store) {
  Impl& I = *impl_;
  const ModelConfig& c = I.src.config();
  require(!seqs.empty(), "calibration: no sequences");
  require(store.count() == int64_t(seqs.size()) && store.dim() == c.dim,
          "internal: calibration store shape does not match the sequences");
  for (const auto& s : seqs)
    require(int64_t(s.size()) == store.tokens(), "calibration sequences must all hold ",
            store.tokens(), " tokens");
  ModelOptions mo;
  mo.n_threads = I.opt.n_threads;
  mo.max_ctx = int(store.tokens());
  mo.max_batch = int(std::min<int64_t>(store.tokens(), 512));
  mo.linear_factory = [](const ModelSource&, const TensorInfo& t) -> std::unique_ptr<Linear> {
    return std::make_unique<UnloadedLinear>(t.name, t.shape.at(0), t.shape.at(1));
  };
  I.pool.reset();
  // Streaming: no block's KV cache or weights and no fp32 embedding table are held; blocks come
  // in with load_block and go with release_block (which also drops their mmap'd source pages).
  mo.lazy_blocks = true;
  I.model = std::make_unique<Model>(I.src, mo);
  I.calibrated = true;
  std::vector<float> x(size_t(store.tokens() * c.dim));  // (tokens, dim)
  for (size_t i = 0; i < seqs.size(); ++i) {
    I.model->embed(seqs[i].data(), int(seqs[i].size()), x.data());
    store.put(int64_t(i), x.data());
  }
}

void BlockwiseQuantizer::emit_head(QuantizedTensorSink& sink) {
  for (const std::string& n : impl_->order) {
    if (block_index(n) >= 0) break;
    if (n != kTokenEmbdName) break;
    const TensorInfo* t = impl_->src.find(n);
    sink.add_unchanged(*t);
    impl_->src.release_pages(*t);  // written out: its mapped pages need not stay resident
  }
}

void BlockwiseQuantizer::load_block(int l) {
  Impl& I = *impl_;
  require(l >= 0 && l < I.n_layers(), "block ", l, " out of range");
  const ModelConfig& c = I.src.config();
  const int64_t dim = c.dim;
  for (int s = 0; s < kLinearSlots; ++s) {
    const auto [R, C] = linear_shape(c, LinearSlot(s));
    const TensorInfo& t = I.src.get(linear_weight_name(l, LinearSlot(s)), {R, C});
    I.rows[s] = R;
    I.cols[s] = C;
    I.W[s] = std::make_shared<std::vector<float>>(size_t(I.rows[s] * I.cols[s]));
    load_tensor_f32(t, I.W[s]->data());
    I.q[s] = QuantizedMatrix{};
    I.awq_log[s].clear();
  }
  I.attn_norm.resize(size_t(dim));
  I.ffn_norm.resize(size_t(dim));
  load_tensor_f32(I.src.get(block_tensor_name(l, "attn_norm.weight"), {dim}), I.attn_norm.data());
  load_tensor_f32(I.src.get(block_tensor_name(l, "ffn_norm.weight"), {dim}), I.ffn_norm.data());
  I.norms_changed = false;
  if (I.model) {
    I.model->load_block(l);  // lazy model: KV cache (and placeholder projections) for block l
    I.model->attn_norm(l) = I.attn_norm;
    I.model->ffn_norm(l) = I.ffn_norm;
    for (LinearSlot s : kAllLinearSlots) I.install_fp(l, s);
  }
  I.loaded = l;
}

void BlockwiseQuantizer::release_block(int l) {
  Impl& I = *impl_;
  if (I.model) I.model->release_block(l);  // its projections, KV cache and mapped source pages
  // The mapped source pages of the block (touched by load_block and the sink) leave the resident
  // set, so a model larger than memory streams through.
  for (const std::string& name : I.order)
    if (block_index(name) == l) I.src.release_pages(*I.src.find(name));
  for (int s = 0; s < kLinearSlots; ++s) {
    I.W[s].reset();
    I.q[s] = QuantizedMatrix{};
  }
  I.loaded = -1;
}

// AWQ on the loaded block l (see the header). The model holds block l's fp weights on entry and on
// return (folded, so the block computes the same function).
void BlockwiseQuantizer::Impl::awq_block(int l, CalibActivations& store, QuantReport& rep) {
  const ModelConfig& c = src.config();
  const auto& groups = slot_groups();
  const int64_t T = store.tokens();
  const int64_t n_seqs =
      std::min<int64_t>(store.count(), std::max<int64_t>(1, (opt.awq_tokens + T - 1) / T));

  // One pass over the first n_seqs sequences: mean |x| of each group's input, o's inputs (so the
  // groups after attention are scored without rerunning it) and the fp block outputs (the
  // search's reference).
  const int64_t dim = c.dim;
  MemoryCalibActivations sub_in(n_seqs, T, dim);
  buf.resize(size_t(T * dim));
  for (int64_t i = 0; i < n_seqs; ++i) {
    store.get(i, buf.data());
    sub_in.put(i, buf.data());
  }
  // o's, gate/up's and down's inputs in pass order: (n_seqs * T, q_dim), (.., dim), (.., hidden)
  std::vector<float> att_rows, ffn_rows, down_rows;
  std::array<std::vector<double>, 4> abs_sum;  // per group, sum of |x| of each input channel
  std::array<int64_t, 4> seen{};
  const std::array<std::vector<float>*, 4> rows_of = {nullptr, &att_rows, &ffn_rows, &down_rows};
  for (size_t g = 0; g < groups.size(); ++g)
    abs_sum[g].assign(size_t(cols[int(groups[g].members[0])]), 0.0);
  const BlockObserver stats = [&](BlockTap tap, const float* x, int64_t n, int64_t width) {
    size_t g = 0;
    while (groups[g].input != tap) ++g;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < width; ++j) abs_sum[g][size_t(j)] += std::fabs(x[i * width + j]);
    seen[g] += n;
    if (rows_of[g]) rows_of[g]->insert(rows_of[g]->end(), x, x + n * width);
  };
  std::vector<float> ref, out;  // (n_seqs * T, dim) block outputs: fp, candidate
  run_block(l, sub_in, -1, false, &ref, stats);
  const int64_t N = n_seqs * T;  // tokens the search scores
  ThreadPool& p = model->pool();
  const int64_t hidden = rows[int(LinearSlot::Gate)];
  std::vector<float> g_buf, u_buf;  // (N, hidden) each
  // The feed-forward output for gate/up's inputs xn (N, dim), with the model's current layers.
  auto ffn_out = [&](const Linear& G, const Linear& U, const float* xn, std::vector<float>& y) {
    g_buf.resize(size_t(N * hidden));
    u_buf.resize(size_t(N * hidden));
    swiglu(G, U, xn, N, g_buf.data(), u_buf.data(), p);
    y.resize(size_t(N * dim));
    model->linear(l, LinearSlot::Down).forward(g_buf.data(), N, y.data(), p);
  };
  // References of the groups after attention: o's output, the feed-forward output, down's output.
  std::vector<float> ref_o(size_t(N * dim)), ref_ffn, ref_down(size_t(N * dim));
  model->linear(l, LinearSlot::O).forward(att_rows.data(), N, ref_o.data(), p);
  ffn_out(model->linear(l, LinearSlot::Gate), model->linear(l, LinearSlot::Up), ffn_rows.data(),
          ref_ffn);
  model->linear(l, LinearSlot::Down).forward(down_rows.data(), N, ref_down.data(), p);

  QuantSpec search_spec;  // the search scores uniform RTN at the target bits and group
  search_spec.kind = QuantKind::Uniform;
  search_spec.bits = layer.bits;
  search_spec.group = layer.group;
  // Candidates are quantized as the final RTN will be (MSE clip search on): scoring them with
  // plain min-max RTN picked scales that lost to clip-searched RTN alone on stories260K.
  RtnOptions search_rtn;
  search_rtn.clip_search = true;
  const int hd = c.head_dim, heads_per_kv = c.n_heads / c.n_kv_heads;
  const int64_t kv_dim = int64_t(c.n_kv_heads) * hd;

  for (size_t g = 0; g < groups.size(); ++g) {
    const std::vector<LinearSlot>& members = groups[g].members;
    const bool is_o = members[0] == LinearSlot::O;
    if (is_o && c.attn_bias) {
      rep.notes.push_back(block_tensor_name(l, "attn_output") +
                          ": AWQ scaling skipped (v has a bias, which the fold would change)");
      continue;
    }
    const int64_t in = cols[int(members[0])];
    std::vector<float> mean(static_cast<size_t>(in));
    for (int64_t j = 0; j < in; ++j) mean[size_t(j)] = float(abs_sum[g][size_t(j)] / double(seen[g]));
    // o's input channel h*hd + d carries v's output kvh*hd + d for every head h of KV group kvh, so
    // one scale per v output: the statistics are averaged over the heads sharing it.
    if (is_o) {
      std::vector<float> kv(size_t(kv_dim), 0.0f);
      for (int h = 0; h < c.n_heads; ++h)
        for (int d = 0; d < hd; ++d)
          kv[size_t((h / heads_per_kv) * hd + d)] += mean[size_t(h * hd + d)] / heads_per_kv;
      mean = std::move(kv);
    }
    auto expand = [&](const std::vector<float>& s) {
      if (!is_o) return s;
      std::vector<float> full(static_cast<size_t>(in));
      for (int h = 0; h < c.n_heads; ++h)
        for (int d = 0; d < hd; ++d) full[size_t(h * hd + d)] = s[size_t((h / heads_per_kv) * hd + d)];
      return full;
    };
    // Scored by the output of the smallest part of the block that holds the group: the block
    // (q/k/v: attention output feeds everything after it), o's output, the feed-forward output
    // (gate/up) and down's output; the candidate weights are Q(W diag s) diag(1/s), which is
    // what the folded model computes.
    auto error_fn = [&](const std::vector<float>& s) {
      const std::vector<float> full = expand(s);
      std::array<std::unique_ptr<DenseLinear>, kLinearSlots> cand;
      for (LinearSlot m : members) {
        const int64_t R = rows[int(m)], C = cols[int(m)];
        std::vector<float> ws(*W[int(m)]);  // (R, C) W diag(s)
        scale_columns(ws.data(), R, C, full.data());
        auto dq = std::make_shared<std::vector<float>>(size_t(R * C));
        dequantize(quantize_rtn(ws.data(), R, C, search_spec, search_rtn, &threads()), dq->data());
        for (int64_t r = 0; r < R; ++r)
          for (int64_t j = 0; j < C; ++j) (*dq)[size_t(r * C + j)] /= full[size_t(j)];
        cand[int(m)] = std::make_unique<DenseLinear>(std::move(dq), R, C);
      }
      const std::vector<float>* want = &ref;
      out.clear();
      if (members[0] == LinearSlot::Q) {
        for (LinearSlot m : members)
          model->set_linear(l, m, std::move(cand[int(m)]));
        run_block(l, sub_in, -1, false, &out);
        for (LinearSlot m : members) install_fp(l, m);
      } else if (members[0] == LinearSlot::O) {
        out.resize(size_t(N * dim));
        cand[int(LinearSlot::O)]->forward(att_rows.data(), N, out.data(), p);
        want = &ref_o;
      } else if (members[0] == LinearSlot::Gate) {
        ffn_out(*cand[int(LinearSlot::Gate)], *cand[int(LinearSlot::Up)], ffn_rows.data(), out);
        want = &ref_ffn;
      } else {
        out.resize(size_t(N * dim));
        cand[int(LinearSlot::Down)]->forward(down_rows.data(), N, out.data(), p);
        want = &ref_down;
      }
      double e = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        const double d = double(out[i]) - (*want)[i];
        e += d * d;
      }
      return e;
    };
    const AwqSearchResult a = awq_search_scales(mean, error_fn, opt.awq_grid);
    const std::vector<float> full = expand(a.scales);
    for (LinearSlot m : members) {
      scale_columns(W[int(m)]->data(), rows[int(m)], cols[int(m)], full.data());
      awq_log[int(m)] = "awq alpha " + std::to_string(a.alpha).substr(0, 4) + ". ";
    }
    switch (members[0]) {
      case LinearSlot::Q:
        fold_into_norm(attn_norm.data(), c.dim, a.scales.data());
        model->attn_norm(l) = attn_norm;
        norms_changed = true;
        break;
      case LinearSlot::O:
        fold_into_linear_rows(W[int(LinearSlot::V)]->data(), rows[int(LinearSlot::V)],
                              cols[int(LinearSlot::V)], a.scales.data());
        install_fp(l, LinearSlot::V);
        break;
      case LinearSlot::Gate:
        fold_into_norm(ffn_norm.data(), c.dim, a.scales.data());
        model->ffn_norm(l) = ffn_norm;
        norms_changed = true;
        break;
      default:  // down: its input is silu(gate) * up, linear in up's output rows
        fold_into_linear_rows(W[int(LinearSlot::Up)]->data(), rows[int(LinearSlot::Up)],
                              cols[int(LinearSlot::Up)], a.scales.data());
        install_fp(l, LinearSlot::Up);
        break;
    }
    for (LinearSlot m : members) install_fp(l, m);
  }
}

// Block-AP on the quantized block l: trains I.q against the fp outputs in targets, then installs
// the result so the block's outputs come from it.
void BlockwiseQuantizer::Impl::block_ap(int l, CalibActivations& store, CalibActivations& targets,
                                        QuantReport& rep,
                                        const std::function<void(const std::string&)>& status) {
  const BlockApOptions& o = *opt.block_ap;
  const auto read_input = [&](int64_t i, float* x) { store.get(i, x); };
  const auto read_target = [&](int64_t i, float* x) { targets.get(i, x); };
  char line[160];
  const BlockApResult r = elutq::block_ap(
      model->block(l), q, read_input, read_target, store.count(), store.tokens(), o, threads(),
      [&](int epoch, int step, int steps, double loss) {
        std::snprintf(line, sizeof line, "block-ap epoch %d/%d step %d/%d mse %.3g", epoch,
                      o.epochs, step, steps, loss);
        status(line);
      });
  for (LinearSlot s : kAllLinearSlots) install_quantized(l, s);
  std::snprintf(line, sizeof line,
                "blk %d block-ap: held-out mse %.4g -> %.4g (%s epoch %d of %d), %.0f s", l,
                r.start_loss, r.best_loss, r.best_epoch > 0 ? "kept" : "start kept, no better",
                r.best_epoch, o.epochs, r.seconds);
  rep.notes.push_back(line);
}

void BlockwiseQuantizer::quantize_block(int l, CalibActivations* store, QuantizedTensorSink& sink) {
  Impl& I = *impl_;
  require(I.loaded == l, "internal: block ", l, " is not loaded");
  require(I.calibrated || !blockwise_needs_calibration(I.opt), "method '",
          quant_method_name(I.opt.layer.method), "'", I.awq ? " with AWQ" : "",
          " needs calibration data (embed_calibration first)");
  require(!I.calibrated || store, "internal: calibrated quantization needs the activation store");
  const int n = I.n_layers();
  const std::string tag = "blk " + std::to_string(l + 1) + "/" + std::to_string(n) + " ";
  if (I.awq) {
    if (progress_) progress_(l, n, tag + "awq scale search");
    I.awq_block(l, *store, report_);
  }
  // Block-AP's targets: the fp block's outputs on this block's inputs.
  std::unique_ptr<CalibActivations> targets;
  if (I.opt.block_ap && !I.opt.fold_only) {
    if (progress_) progress_(l, n, tag + "fp outputs");
    targets = I.make_store(store->count(), store->tokens(), store->dim());
    I.run_block(l, *store, -1, false, nullptr, {}, targets.get());
  }
  std::unique_ptr<CalibActivations> att;  // (count, tokens, q_dim) o's inputs, quantized q/k/v
  // (count, tokens, hidden) down's inputs, gate and up quantized, when the store may take the
  // residual stream meanwhile (not for Block-AP, which needs the block inputs afterwards).
  std::unique_ptr<CalibActivations> down_in;
  for (const SlotGroup& group : slot_groups()) {
    const std::vector<LinearSlot>& members = group.members;
    if (I.opt.fold_only) break;
    std::vector<float> H;  // (cols, cols) the group's input Hessian, with earlier groups quantized
    const LinearSlot first = members[0];
    if (I.calibrated) {
      if (progress_) progress_(l, n, tag + linear_slot_name(first) + " inputs");
      HessianAccumulator acc(I.cols[int(first)], I.threads().size());
      if (first == LinearSlot::Q) {
        I.collect_block_input(*store, acc);
      } else if (first == LinearSlot::O) {
        att = I.make_store(store->count(), store->tokens(), I.cols[int(LinearSlot::O)]);
        I.attention_pass(l, *store, *att, acc);
      } else if (first == LinearSlot::Down && !targets) {
        down_in = I.make_store(store->count(), store->tokens(), I.cols[int(LinearSlot::Down)]);
        I.down_inputs_pass(*store, *att, acc, *down_in);
        att.reset();  // the store holds what o added
      } else {
        I.mlp_pass(*store, *att, first == LinearSlot::Gate ? &acc : nullptr,
                   first == LinearSlot::Down ? &acc : nullptr, false);
      }
      H = acc.hessian();
    }
    for (LinearSlot m : members) {
      const std::string name = linear_weight_name(l, m);
      if (progress_)
        progress_(l, n, tag + linear_slot_name(m) + " " + quant_method_name(I.layer.method));
      const auto t0 = std::chrono::steady_clock::now();
      const int64_t R = I.rows[int(m)], C = I.cols[int(m)];
      const LayerQuantOptions lo = blockwise_layer_for(I.opt, name);
      const QuantSpec spec = method_spec(lo);
      std::string log = I.awq_log[int(m)];
      if (I.opt.awq_clip && m != LinearSlot::Q && m != LinearSlot::K &&
          spec.kind != QuantKind::Codebook) {
        awq_clip_search(I.W[int(m)]->data(), R, C, H, spec);
        log += "awq clip. ";
      }
      LayerQuantResult r = quantize_layer(I.W[int(m)]->data(), R, C, lo,
                                          H.empty() ? nullptr : &H, nullptr, &I.threads());
      I.q[int(m)] = std::move(r.q);
      if (I.model) I.install_quantized(l, m);
      report_.layers.push_back({name, R, C, r.rel_weight_error, r.rel_output_error,
                                r.bits_per_weight, seconds_since(t0), log + r.log, spec.name()});
      report_.add_totals(report_.layers.back());
    }
  }
  if (targets) {
    I.block_ap(l, *store, *targets, report_, [&](const std::string& status) {
      if (progress_) progress_(l, n, tag + status);
    });
    att.reset();  // o's inputs changed with the projections: the outputs come from a full pass
  }
  // The block's tensors, in source order.
  for (const std::string& name : I.order) {
    if (block_index(name) != l) continue;
    bool done = false;
    for (LinearSlot s : kAllLinearSlots)
      if (name == linear_weight_name(l, s)) {
        if (I.opt.fold_only)
          sink.add_f32(*I.src.find(name), I.W[int(s)]->data());
        else
          sink.add_quantized(name, I.q[int(s)]);
        done = true;
      }
    if (done) continue;
    const TensorInfo* t = I.src.find(name);
    require(t != nullptr, "model lists tensor '", name, "' but does not provide it");
    if (I.norms_changed && name == block_tensor_name(l, "attn_norm.weight"))
      sink.add_f32(*t, I.attn_norm.data());
    else if (I.norms_changed && name == block_tensor_name(l, "ffn_norm.weight"))
      sink.add_f32(*t, I.ffn_norm.data());
    else
      sink.add_unchanged(*t);
  }
  // The quantized block's outputs feed the next block.
  if (I.calibrated) {
    if (progress_) progress_(l, n, tag + "outputs");
    if (down_in)
      I.down_pass(*store, *down_in);
    else if (att)
      I.mlp_pass(*store, *att, nullptr, nullptr, true);
    else
      I.run_block(l, *store, -1, true, nullptr);  // fold_only: the folded fp block
  }
}

void BlockwiseQuantizer::emit_tail(CalibActivations* store, QuantizedTensorSink& sink) {
  Impl& I = *impl_;
  for (const std::string& name : I.order) {
    if (name == kTokenEmbdName || block_index(name) >= 0) continue;
    const TensorInfo* t = I.src.find(name);
    require(t != nullptr, "model lists tensor '", name, "' but does not provide it");
    if (name != kOutputName || !I.opt.quantize_output) {
      sink.add_unchanged(*t);
      continue;
    }
    require(t->shape.size() == 2, "output.weight should be a matrix");
    const int64_t R = t->shape[0], C = t->shape[1];
    if (progress_) progress_(I.n_layers(), I.n_layers(), "output head");
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> W(size_t(R * C)), H;  // (R, C), (C, C)
    load_tensor_f32(*t, W.data());
    if (I.calibrated) {
      require(store && I.model, "internal: output head needs the calibration activations");
      HessianAccumulator acc(C, I.threads().size());
      const int64_t T = store->tokens();
      I.buf.resize(size_t(T * C));
      for (int64_t i = 0; i < store->count(); ++i) {
        store->get(i, I.buf.data());
        I.model->final_norm(I.buf.data(), int(T));
        acc.add(I.buf.data(), T);
      }
      H = acc.hessian();
    }
    LayerQuantResult r =
        quantize_layer(W.data(), R, C, I.head_layer, H.empty() ? nullptr : &H, nullptr, &I.threads());
    sink.add_quantized(name, r.q);
    report_.layers.push_back({name, R, C, r.rel_weight_error, r.rel_output_error,
                              r.bits_per_weight, seconds_since(t0), r.log,
                              method_spec(I.head_layer).name()});
    report_.add_totals(report_.layers.back());
  }
}

std::vector<std::vector<double>> BlockwiseQuantizer::measure_sensitivity(
    int l, CalibActivations& store, const std::vector<QuantSpec>& choices,
    const std::vector<float>* weight) {
  Impl& I = *impl_;
  require(I.loaded == l && I.model, "internal: measure_sensitivity needs block ", l,
          " loaded and the calibration embedded");
  std::vector<float> fp, trial;
  I.run_block(l, store, -1, false, &fp);
  require(!weight || weight->size() == fp.size(), "internal: sensitivity weights have ",
          weight ? weight->size() : 0, " values for ", fp.size(), " outputs");
  double energy = 0;
  for (float v : fp) energy += double(v) * v;
  if (weight) energy = 1;  // weighted errors are absolute (loss units)
  std::vector<std::vector<double>> errors(kLinearSlots);
  for (int s = 0; s < kLinearSlots; ++s) {
    for (const QuantSpec& c : choices) {
      QuantSpec u = c;
      u.kind = QuantKind::Uniform;
      I.q[s] = quantize_rtn(I.W[s]->data(), I.rows[s], I.cols[s], u, {}, &I.threads());
      I.install_quantized(l, LinearSlot(s));
      trial.clear();
      I.run_block(l, store, -1, false, &trial);
      double se = 0;
      for (size_t i = 0; i < fp.size(); ++i) {
        const double d = double(trial[i]) - fp[i];
        se += (weight ? double((*weight)[i]) : 1.0) * d * d;
      }
      errors[size_t(s)].push_back(energy > 0 ? se / energy : 0.0);
    }
    I.q[s] = QuantizedMatrix{};
    I.install_fp(l, LinearSlot(s));
  }
  const int64_t T = store.tokens(), D = store.dim();
  for (int64_t i = 0; i < store.count(); ++i) store.put(i, fp.data() + i * T * D);
  return errors;
}

QuantReport BlockwiseQuantizer::run(CalibActivations* store, QuantizedTensorSink& sink,
                                        const std::function<void(int)>& block_done,
                                        int first_block) {
  Impl& I = *impl_;
  require(first_block >= 0 && first_block <= I.n_layers(), "resume block ", first_block,
          " out of range");
  if (first_block == 0) emit_head(sink);
  for (int l = first_block; l < I.n_layers(); ++l) {
    load_block(l);
    quantize_block(l, store, sink);
    release_block(l);
    if (block_done) block_done(l);
  }
  emit_tail(store, sink);
  return report_;
}

}  // namespace elutq
