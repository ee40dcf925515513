// `elutq tensor -m MODEL NAME [-o out.f32]`: shape, type and statistics of one stored tensor,
// optionally written out as raw little-endian fp32 (used by the reference tests).
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "format/dequant.h"
#include "format/gguf_file.h"
#include "format/gguf_model.h"
#include "runtime/open_model.h"
#include "tensor/model_source.h"

namespace elutq::cli {
namespace {

// Writes n floats to path, whole or not at all.
void write_f32_atomic(const std::string& path, const float* v, size_t n) {
  AtomicFile f(path);
  f.write(v, n * sizeof(float));
  f.commit();
}

int run_tensor(int argc, char** argv) {
  CLI::App app(
      "Show one stored tensor of a model: shape, element type, size and value statistics after "
      "conversion to fp32. With -o, also write its values as raw little-endian fp32.",
      argv[0]);
  std::string model, name, out;
  app.add_option("-m,--model", model, "model: GGUF file, Hugging Face folder or llama2.c .bin")
      ->required();
  app.add_option("name", name, "tensor name as stored, e.g. blk.0.attn_q.weight")->required();
  app.add_option("-o,--output", out, "write the values here as raw little-endian fp32");
  int code = 0;
  if (!parse(app, argc, argv, &code)) return code;

  // A GGUF file is read directly, so files without model metadata work too.
  std::unique_ptr<GgufFile> gguf;
  std::unique_ptr<ModelSource> source;
  const TensorInfo* t = nullptr;
  // elutq quantized files go through the model loader, which dequantizes their blobs.
  if (!std::filesystem::is_directory(model) && is_gguf_file(model)) {
    gguf = std::make_unique<GgufFile>(model);
    if (!gguf->has("elutq.format_version")) t = gguf->find_tensor(name);
  }
  if (!gguf || gguf->has("elutq.format_version")) {
    source = open_model(model);
    t = source->find(name);
  }
  require(t != nullptr, "tensor '", name, "' is not in '", model,
          "'; `elutq inspect -m MODEL` lists the tensors");

  std::vector<float> v(static_cast<size_t>(t->numel()));  // (numel) values, row-major
  tensor_to_f32(*t, v.data());
  double sum = 0, sum2 = 0;
  float lo = INFINITY, hi = -INFINITY;
  size_t nonfinite = 0;
  for (float x : v) {
    if (!std::isfinite(x)) {
      ++nonfinite;
      continue;
    }
    sum += x;
    sum2 += static_cast<double>(x) * x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  const double n = static_cast<double>(v.size() - nonfinite);
  const double mean = n > 0 ? sum / n : 0;
  const double sd = n > 0 ? std::sqrt(std::max(0.0, sum2 / n - mean * mean)) : 0;
  std::string shape = "[";
  for (size_t i = 0; i < t->shape.size(); ++i)
    shape += (i ? ", " : "") + std::to_string(t->shape[i]);
  shape += "]";
  std::printf("name:   %s\nshape:  %s\ndtype:  %s\nbytes:  %llu\n", t->name.c_str(), shape.c_str(),
              dtype_name(t->dtype).c_str(), static_cast<unsigned long long>(t->nbytes));
  std::printf("min:    %.6g\nmax:    %.6g\nmean:   %.6g\nstd:    %.6g\n", lo, hi, mean, sd);
  if (nonfinite) std::printf("non-finite values: %zu\n", nonfinite);
  if (!out.empty()) {
    write_f32_atomic(out, v.data(), v.size());
    std::printf("wrote %zu fp32 values to %s\n", v.size(), out.c_str());
  }
  return 0;
}

const VerbRegistrar reg({"tensor", "show one tensor (shape, type, statistics); -o dumps it as fp32",
                         run_tensor});

}  // namespace
}  // namespace elutq::cli
