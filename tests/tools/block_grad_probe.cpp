// Test tooling for tests/reference/test_block_grad.py (not part of the CLI): runs the decoder
// block's training forward and backward (model/block_gradient.h) on weights and inputs read from a
// file and writes y, dx and every parameter gradient, so that PyTorch autograd can check them.
//
// usage: block_grad_probe [--float] INPUT OUTPUT
//   Runs in double unless --float: the float64 inputs are then rounded to float, the block runs
//   in float, and the outputs are widened back to float64.
//
// Both files are little-endian, with nothing after the last array.
// INPUT
//   char[8]  "ELQBGIN1"
//   int32    dim, n_heads, n_kv_heads, head_dim, hidden_dim,
//            rope_style (0: half-split, as HF; 1: interleaved), attn_bias (0/1), qk_norm (0/1),
//            sliding_window (0: full attention), n_seq, seq_len
//   float64  norm_eps, rope_theta
//   float64  the parameters in BlockWeights order, row-major:
//              attn_norm (dim), ffn_norm (dim),
//              w[Q, K, V, O, Gate, Up, Down], each (out, in) as linear_shape gives it,
//              bq (q_dim), bk (kv_dim), bv (kv_dim)      only if attn_bias,
//              q_norm (head_dim), k_norm (head_dim)      only if qk_norm
//   float64  x (n_seq * seq_len, dim), dy (n_seq * seq_len, dim)
// OUTPUT
//   char[8]  "ELQBGOU1"
//   int32    half = head_dim / 2
//   float64  inv_freq (half): the RoPE frequencies the block used (rope_inv_freq),
//            cos, sin (seq_len, half): rope_cos_sin of positions 0..seq_len-1, the angles the
//              block rotates by (rounded to float, as the block takes them),
//            y (n_seq * seq_len, dim), dx (n_seq * seq_len, dim),
//            the gradient of every parameter, in the order and shapes of INPUT's parameters.
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "model/block_gradient.h"
#include "model/rope.h"
#include "tensor/model_config.h"

namespace elutq {
namespace {

static_assert(std::endian::native == std::endian::little, "the probe's files are little-endian");

constexpr char kInputMagic[8] = {'E', 'L', 'Q', 'B', 'G', 'I', 'N', '1'};
constexpr char kOutputMagic[8] = {'E', 'L', 'Q', 'B', 'G', 'O', 'U', '1'};

// Reads fixed-size fields from a byte buffer, failing with the field's name when it runs out.
class Reader {
 public:
  explicit Reader(std::vector<char> bytes) : bytes_(std::move(bytes)) {}

  void read(void* out, size_t n, const char* what) {
    require(n <= bytes_.size() - pos_, "input ends inside ", what, " (needs ", n, " bytes at offset ",
            pos_, ", file has ", bytes_.size(), ")");
    std::memcpy(out, bytes_.data() + pos_, n);
    pos_ += n;
  }
  int32_t i32(const char* what) {
    int32_t v;
    read(&v, sizeof v, what);
    return v;
  }
  double f64(const char* what) {
    double v;
    read(&v, sizeof v, what);
    return v;
  }
  std::vector<double> f64s(size_t n, const char* what) {
    std::vector<double> v(n);
    read(v.data(), n * sizeof(double), what);
    return v;
  }
  size_t left() const { return bytes_.size() - pos_; }

 private:
  std::vector<char> bytes_;
  size_t pos_ = 0;
};

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  require(f.good(), "cannot open input '", path, "'");
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

int32_t flag(Reader& r, const char* what) {
  const int32_t v = r.i32(what);
  require(v == 0 || v == 1, what, " must be 0 or 1, got ", v);
  return v;
}

struct ProbeInput {
  ModelConfig cfg;
  int n_seq = 0, seq_len = 0;
  std::vector<std::vector<double>> params;  // in INPUT order
  std::vector<double> x, dy;  // (n_seq * seq_len, dim)
};

// Parameter sizes in INPUT order (the same order BlockGradients is written in).
std::vector<size_t> param_sizes(const ModelConfig& c) {
  std::vector<size_t> sizes = {size_t(c.dim), size_t(c.dim)};
  for (LinearSlot s : kAllLinearSlots) {
    const auto [out, in] = linear_shape(c, s);
    sizes.push_back(size_t(out * in));
  }
  const size_t q_dim = size_t(c.n_heads) * c.head_dim, kv_dim = size_t(c.n_kv_heads) * c.head_dim;
  if (c.attn_bias) sizes.insert(sizes.end(), {q_dim, kv_dim, kv_dim});
  if (c.qk_norm) sizes.insert(sizes.end(), {size_t(c.head_dim), size_t(c.head_dim)});
  return sizes;
}

ProbeInput read_input(const std::string& path) {
  Reader r(read_file(path));
  char magic[8];
  r.read(magic, sizeof magic, "the magic");
  require(std::memcmp(magic, kInputMagic, sizeof magic) == 0, "'", path,
          "' is not a block_grad_probe input (magic ELQBGIN1 expected)");
  ProbeInput in;
  ModelConfig& c = in.cfg;
  c.dim = r.i32("dim");
  c.n_heads = r.i32("n_heads");
  c.n_kv_heads = r.i32("n_kv_heads");
  c.head_dim = r.i32("head_dim");
  c.hidden_dim = r.i32("hidden_dim");
  const int32_t style = r.i32("rope_style");
  require(style == 0 || style == 1, "rope_style must be 0 (half-split) or 1 (interleaved), got ",
          style);
  c.rope_style = style == 0 ? RopeStyle::HalfSplit : RopeStyle::Interleaved;
  c.attn_bias = flag(r, "attn_bias");
  c.qk_norm = flag(r, "qk_norm");
  c.sliding_window = r.i32("sliding_window");
  require(c.sliding_window >= 0, "sliding_window must be >= 0, got ", c.sliding_window);
  in.n_seq = r.i32("n_seq");
  in.seq_len = r.i32("seq_len");
  require(in.n_seq > 0 && in.seq_len > 0, "n_seq and seq_len must be positive, got ", in.n_seq,
          " and ", in.seq_len);
  c.norm_eps = float(r.f64("norm_eps"));
  c.rope_theta = float(r.f64("rope_theta"));
  // Fields the block does not read, set so that validate_config checks the rest.
  c.arch = c.qk_norm ? "qwen3" : c.attn_bias ? "qwen2" : "llama";
  c.n_layers = 1;
  c.vocab_size = 1;
  c.max_seq_len = in.seq_len;
  validate_config(c);

  for (size_t n : param_sizes(c)) in.params.push_back(r.f64s(n, "the parameters"));
  const size_t act = size_t(in.n_seq) * in.seq_len * c.dim;
  in.x = r.f64s(act, "x");
  in.dy = r.f64s(act, "dy");
  require(r.left() == 0, "input has ", r.left(),
          " bytes after dy: its header does not match its arrays");
  return in;
}

template <class T>
std::vector<T> narrow(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// Runs the block in T and returns y, dx and the gradients (INPUT order), widened to double.
template <class T>
std::vector<std::vector<double>> run_block(const ProbeInput& in, const std::vector<float>& inv_freq) {
  const ModelConfig& c = in.cfg;
  std::vector<std::vector<T>> p;
  for (const auto& v : in.params) p.push_back(narrow<T>(v));
  BlockWeights<T> w;
  size_t i = 0;
  w.attn_norm = p[i++].data();
  w.ffn_norm = p[i++].data();
  for (int s = 0; s < kLinearSlots; ++s) w.w[s] = p[i++].data();
  if (c.attn_bias) {
    w.bq = p[i++].data();
    w.bk = p[i++].data();
    w.bv = p[i++].data();
  }
  if (c.qk_norm) {
    w.q_norm = p[i++].data();
    w.k_norm = p[i++].data();
  }

  const std::vector<T> x = narrow<T>(in.x), dy = narrow<T>(in.dy);
  std::vector<T> y(x.size()), dx(x.size());
  BlockTape<T> tape;
  BlockGradients<T> g;
  g.resize(c);
  ThreadPool pool(2);
  block_forward<T>(c, inv_freq.data(), w, x.data(), in.n_seq, in.seq_len, y.data(), &tape, pool);
  block_backward<T>(c, inv_freq.data(), w, tape, dy.data(), dx.data(), g, pool);

  std::vector<const std::vector<T>*> out = {&y, &dx, &g.attn_norm, &g.ffn_norm};
  for (int s = 0; s < kLinearSlots; ++s) out.push_back(&g.w[s]);
  if (c.attn_bias) out.insert(out.end(), {&g.bq, &g.bk, &g.bv});
  if (c.qk_norm) out.insert(out.end(), {&g.q_norm, &g.k_norm});
  const std::vector<size_t> sizes = param_sizes(c);
  std::vector<std::vector<double>> result;
  for (size_t k = 0; k < out.size(); ++k) {
    const size_t want = k < 2 ? x.size() : sizes[k - 2];
    require(out[k]->size() == want, "block output ", k, " has ", out[k]->size(),
            " values, expected ", want);
    result.emplace_back(out[k]->begin(), out[k]->end());
  }
  return result;
}

// The rotation tables of positions 0..seq_len-1, each (seq_len, half), widened to double.
std::vector<std::vector<double>> rope_tables(const std::vector<float>& inv_freq, int seq_len) {
  const int half = int(inv_freq.size());
  std::vector<float> cos_t(half), sin_t(half);
  std::vector<double> cos_all, sin_all;
  for (int pos = 0; pos < seq_len; ++pos) {
    rope_cos_sin(pos, inv_freq.data(), half, cos_t.data(), sin_t.data());
    cos_all.insert(cos_all.end(), cos_t.begin(), cos_t.end());
    sin_all.insert(sin_all.end(), sin_t.begin(), sin_t.end());
  }
  return {std::move(cos_all), std::move(sin_all)};
}

void write_output(const std::string& path, int32_t half,
                  const std::vector<std::vector<double>>& arrays) {
  std::ofstream f(path, std::ios::binary);
  require(f.good(), "cannot create output '", path, "'");
  f.write(kOutputMagic, sizeof kOutputMagic);
  f.write(reinterpret_cast<const char*>(&half), sizeof half);
  for (const auto& a : arrays)
    f.write(reinterpret_cast<const char*>(a.data()), std::streamsize(a.size() * sizeof(double)));
  f.close();
  require(f.good(), "writing '", path, "' failed");
}

int probe_main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  bool in_float = false;
  if (!args.empty() && args[0] == "--float") {
    in_float = true;
    args.erase(args.begin());
  }
  if (args.size() != 2) {
    std::fprintf(stderr, "usage: block_grad_probe [--float] INPUT OUTPUT\n");
    return 2;
  }
  const ProbeInput in = read_input(args[0]);
  const std::vector<float> inv_freq = rope_inv_freq(in.cfg, nullptr);
  std::vector<std::vector<double>> arrays = {std::vector<double>(inv_freq.begin(), inv_freq.end())};
  for (auto& t : rope_tables(inv_freq, in.seq_len)) arrays.push_back(std::move(t));
  for (auto& a : in_float ? run_block<float>(in, inv_freq) : run_block<double>(in, inv_freq))
    arrays.push_back(std::move(a));
  write_output(args[1], int32_t(inv_freq.size()), arrays);
  return 0;
}

}  // namespace
}  // namespace elutq

int main(int argc, char** argv) {
  try {
    return elutq::probe_main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "block_grad_probe: error: %s\n", e.what());
    return 1;
  }
}
