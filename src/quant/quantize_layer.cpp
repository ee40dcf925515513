// Method dispatch and per-layer report (see quantize_layer.h).
#include "quant/quantize_layer.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/awq.h"
#include "quant/hlqc_fit.h"
#include "quant/ganq.h"
#include "quant/rtn.h"

namespace elutq {

namespace {

// tr(A H A^T) = <H, A^T A> for A (rows, cols) and H (cols, cols) symmetric. Only the upper triangle
// of A^T A is needed: half the multiply-adds of forming A H (which was as large as the layer's GPTQ
// sweep, twice per layer for the report). The triangle is made a block of kTraceCols columns at a
// time, G = A[:, :j1]^T A[:, j0:j1], one sgemm per block on whichever pool thread is free (OpenBLAS
// is single-threaded in the pipeline; the largest blocks go first), and dotted with H at once, so
// no (cols, cols) product is ever held. The blocks' sums are added in block order: the result does
// not depend on which thread made which block.
double quad_trace(const float* A, int64_t rows, int64_t cols, const std::vector<float>& H,
                  ThreadPool* pool) {
  constexpr int64_t kTraceCols = 256;
  const int64_t blocks = (cols + kTraceCols - 1) / kTraceCols;
  std::vector<double> part(size_t(blocks), 0.0);
  auto block = [&](int64_t b) {
    const int64_t j0 = b * kTraceCols, j1 = std::min(cols, j0 + kTraceCols), nb = j1 - j0;
    thread_local std::vector<float> G;  // (j1, nb)
    G.resize(size_t(j1 * nb));
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(j1), int(nb), int(rows), 1.0f, A,
                int(cols), A + j0, int(cols), 0.0f, G.data(), int(nb));
    double t = 0;
    for (int64_t i = 0; i < j1; ++i) {
      const float* g = G.data() + i * nb;
      const float* h = H.data() + i * cols + j0;
      // Above the diagonal each term stands for itself and its mirror; on it, once; below, none.
      for (int64_t j = std::max<int64_t>(0, i - j0); j < nb; ++j)
        t += (i == j0 + j ? 1.0 : 2.0) * double(h[j]) * g[j];
    }
    part[size_t(b)] = t;
  };
  if (pool)
    pool->parallel_chunks(blocks, 1, [&](int64_t k, int64_t) { block(blocks - 1 - k); });
  else
    for (int64_t b = 0; b < blocks; ++b) block(b);
  double t = 0;
  for (double v : part) t += v;
  return t;
}

HlqFitOptions fit_options(const LayerQuantOptions& opt) {
  if (opt.paper_fit) return HlqFitOptions::paper(opt.fit);
  HlqFitOptions f;
  f.method = opt.fit;
  return f;
}

}  // namespace

QuantMethod parse_quant_method(const std::string& name) {
  if (name == "rtn") return QuantMethod::Rtn;
  if (name == "hlq") return QuantMethod::Hlq;
  if (name == "gptq") return QuantMethod::Gptq;
  if (name == "hlq-gptq") return QuantMethod::HlqGptq;
  if (name == "ganq") return QuantMethod::Ganq;
  if (name == "awq") return QuantMethod::Awq;
  fail("unknown quantization method '", name, "' (expected rtn, hlq, gptq, hlq-gptq, ganq or awq)");
}

std::string quant_method_name(QuantMethod m) {
  switch (m) {
    case QuantMethod::Rtn: return "rtn";
    case QuantMethod::Hlq: return "hlq";
    case QuantMethod::Gptq: return "gptq";
    case QuantMethod::HlqGptq: return "hlq-gptq";
    case QuantMethod::Ganq: return "ganq";
    case QuantMethod::Awq: return "awq";
  }
  return "?";
}

bool method_needs_calibration(QuantMethod m) {
  return m != QuantMethod::Rtn && m != QuantMethod::Hlq;
}

QuantSpec method_spec(const LayerQuantOptions& opt) {
  QuantSpec s;
  s.bits = opt.bits;
  s.group = opt.group;
  switch (opt.method) {
    case QuantMethod::Hlq:
    case QuantMethod::HlqGptq: s.kind = opt.hlq_compact ? QuantKind::HLQC : QuantKind::HLQ; break;
    case QuantMethod::Ganq:
      s.kind = QuantKind::Codebook;
      s.group = 0;
      break;
    default: s.kind = QuantKind::Uniform; break;
  }
  validate_quant_spec(s);
  return s;
}

LayerQuantResult quantize_layer(const float* W, int64_t rows, int64_t cols,
                                const LayerQuantOptions& opt, const std::vector<float>* H,
                                const std::vector<float>* mean_abs_x, ThreadPool* pool) {
  require(rows > 0 && cols > 0, "quantize_layer: empty weight");
  const QuantSpec spec = method_spec(opt);
  require(!method_needs_calibration(opt.method) || H != nullptr, "method '",
          quant_method_name(opt.method), "' needs calibration data (a Hessian); use rtn or hlq ",
          "without calibration");
  if (H)
    require(int64_t(H->size()) == cols * cols, "quantize_layer: Hessian must be ", cols, " x ",
            cols);
  LayerQuantResult res;
  std::optional<GptqResult> gptq;  // the GPTQ methods' loss, for the report
  GptqOptions g;
  g.percdamp = opt.percdamp;
  g.act_order = opt.act_order;
  g.variant = opt.variant;
  g.fit = fit_options(opt);
  RtnOptions clip;  // MSE clip search for every uniform fit (RTN, GPTQ groups, AWQ), as fair
  clip.clip_search = true;  // baselines: without it clip-searched RTN can beat plain GPTQ at 2 bits
  g.rtn = clip;
  switch (opt.method) {
    case QuantMethod::Rtn: res.q = quantize_rtn(W, rows, cols, spec, clip, pool); break;
    case QuantMethod::Hlq:
      res.q = spec.kind == QuantKind::HLQC ? quantize_hlqc(W, rows, cols, spec, fit_options(opt), pool)
                                           : quantize_hlq(W, rows, cols, spec, fit_options(opt), pool);
      break;
    case QuantMethod::Gptq:
    case QuantMethod::HlqGptq: {
      GptqResult r = gptq_quantize(W, rows, cols, *H, spec, g, pool);
      res.q = std::move(r.q);
      res.log = r.log;
      gptq = std::move(r);
      break;
    }
    case QuantMethod::Ganq: {
      GanqOptions go;
      go.percdamp = opt.percdamp;
      GanqResult r = ganq_quantize(W, rows, cols, *H, opt.bits, go, pool);
      res.q = std::move(r.q);
      res.log = r.log;
      break;
    }
    case QuantMethod::Awq: {
      require(mean_abs_x && int64_t(mean_abs_x->size()) == cols,
              "awq needs the mean |x| of each of the ", cols, " input channels");
      // Layer-level objective: tr(D H D^T) with D = W - Q(W diag s) diag(1/s).
      std::vector<float> Ws(size_t(rows * cols)), D(size_t(rows * cols));
      auto err = [&](const std::vector<float>& s) {
        std::copy(W, W + rows * cols, Ws.begin());
        scale_columns(Ws.data(), rows, cols, s.data());
        dequantize(quantize_rtn(Ws.data(), rows, cols, spec, clip, pool), D.data());
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < cols; ++j)
            D[r * cols + j] = W[r * cols + j] - D[r * cols + j] / s[j];
        return quad_trace(D.data(), rows, cols, *H, pool);
      };
      AwqSearchResult a = awq_search_scales(*mean_abs_x, err);
      res.input_scales = a.scales;
      std::copy(W, W + rows * cols, Ws.begin());
      scale_columns(Ws.data(), rows, cols, a.scales.data());
      res.q = quantize_rtn(Ws.data(), rows, cols, spec, clip, pool);
      res.log = "awq alpha " + std::to_string(a.alpha) + ". ";
      break;
    }
  }
  // Report, in the layer's own input space (AWQ: undo the scales).
  std::vector<float> D(size_t(rows * cols)), Wv(W, W + rows * cols);
  dequantize(res.q, D.data());
  double num = 0, den = 0;
  double live_num = 0, dead_q = 0;  // sum of D^2 over live inputs, of Q^2 over dead ones
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      float wh = D[r * cols + j];
      if (!res.input_scales.empty()) wh /= res.input_scales[j];
      D[r * cols + j] = Wv[r * cols + j] - wh;
      const double d2 = double(D[r * cols + j]) * D[r * cols + j];
      num += d2;
      den += double(Wv[r * cols + j]) * Wv[r * cols + j];
      if (gptq && gptq->dead[size_t(j)]) dead_q += double(wh) * wh;
      else live_num += d2;
    }
  res.rel_weight_error = den > 0 ? num / den : 0;
  if (H) {
    double t = quad_trace(Wv.data(), rows, cols, *H, pool);
    // GPTQ's summed column errors are the output error under its damped Hessian (gptq.h); taking
    // the damping off gives tr(D H D^T) in O(rows cols) instead of a second product as large as
    // the trace above (a dead input's column adds nothing to it: its row of H is zero).
    const double out = gptq ? std::max(0.0, gptq->proxy_loss - gptq->damp * live_num -
                                                 (1 + gptq->damp) * dead_q)
                            : quad_trace(D.data(), rows, cols, *H, pool);
    res.rel_output_error = t > 0 ? out / t : 0;
  }
  res.bits_per_weight = spec.bits_per_weight(cols);
  return res;
}

}  // namespace elutq
