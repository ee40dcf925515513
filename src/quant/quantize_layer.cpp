// Method dispatch and per-layer report (see quantize_layer.h).
#include "quant/quantize_layer.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/thread_pool.h"
#include "quant/awq.h"
#include "quant/hlqc_fit.h"
#include "quant/ganq.h"
#include "quant/rtn.h"

namespace elutq {

namespace {

// tr(A H A^T) for A (rows, cols), H (cols, cols): a (rows, cols, cols) product, as large as the
// layer's GPTQ sweep, so each pool thread takes a share of the rows as one sgemm (OpenBLAS being
// single-threaded in the pipeline; one call per thread, as each call packs all of H) and the
// threads' sums are added in slot order.
double quad_trace(const float* A, int64_t rows, int64_t cols, const std::vector<float>& H,
                  ThreadPool* pool) {
  const int slots = pool ? pool->size() : 1;
  std::vector<double> part(size_t(slots), 0.0);
  auto rows_of = [&](int slot, int64_t r0, int64_t r1) {
    if (r1 <= r0) return;
    std::vector<float> AH(size_t((r1 - r0) * cols));  // (r1 - r0, cols)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(r1 - r0), int(cols), int(cols), 1.0f,
                A + r0 * cols, int(cols), H.data(), int(cols), 0.0f, AH.data(), int(cols));
    double t = 0;
    for (size_t i = 0; i < AH.size(); ++i) t += double(A[r0 * cols + int64_t(i)]) * AH[i];
    part[size_t(slot)] = t;
  };
  if (pool) pool->run(rows, rows_of);
  else rows_of(0, 0, rows);
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
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      float wh = D[r * cols + j];
      if (!res.input_scales.empty()) wh /= res.input_scales[j];
      D[r * cols + j] = Wv[r * cols + j] - wh;
      num += double(D[r * cols + j]) * D[r * cols + j];
      den += double(Wv[r * cols + j]) * Wv[r * cols + j];
    }
  res.rel_weight_error = den > 0 ? num / den : 0;
  if (H) {
    double t = quad_trace(Wv.data(), rows, cols, *H, pool);
    res.rel_output_error = t > 0 ? quad_trace(D.data(), rows, cols, *H, pool) / t : 0;
  }
  res.bits_per_weight = spec.bits_per_weight(cols);
  return res;
}

}  // namespace elutq
