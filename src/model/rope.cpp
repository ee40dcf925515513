// RoPE frequencies and rotation; see rope.h. Angles are formed in fp32 (pos * inv_freq) exactly
// as transformers does, so long positions round the same way.
#include "model/rope.h"

#include <cmath>

#include "core/error.h"
#include "model/block_ops.h"

namespace elutq {

std::vector<float> rope_inv_freq(const ModelConfig& c, const float* rope_freqs) {
  const int half = c.head_dim / 2;
  std::vector<float> f(half);
  for (int i = 0; i < half; ++i) {
    const float e = float(2 * i) / float(c.head_dim);
    f[i] = float(1.0 / std::pow(double(c.rope_theta), double(e)));
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "linear") {
    for (float& v : f) v /= s.factor;
  } else if (s.type == "llama3") {
    // Long wavelengths are divided by factor, short ones kept, the band between interpolated.
    const double old_len = s.original_max_position;
    const double low_wavelen = old_len / s.low_freq_factor;
    const double high_wavelen = old_len / s.high_freq_factor;
    for (float& v : f) {
      const double inv = v;
      const double wavelen = 2.0 * M_PI / inv;
      double out = wavelen > low_wavelen ? inv / s.factor : inv;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const double smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        out = (1.0 - smooth) * out / s.factor + smooth * out;
      }
      v = float(out);
    }
  } else if (s.type == "llama3-freqs") {
    require(rope_freqs != nullptr, "rope scaling 'llama3-freqs' needs the rope_freqs.weight tensor");
    for (int i = 0; i < half; ++i) f[i] /= rope_freqs[i];
  }
  return f;
}

void rope_cos_sin(int pos, const float* inv_freq, int half, float* cos_out, float* sin_out) {
  for (int i = 0; i < half; ++i) {
    const float angle = float(pos) * inv_freq[i];
    cos_out[i] = std::cos(angle);
    sin_out[i] = std::sin(angle);
  }
}

void rope_rotate(float* v, int head_dim, const float* cos_t, const float* sin_t, RopeStyle style) {
  rope_forward(v, head_dim, cos_t, sin_t, style);
}

}  // namespace elutq
