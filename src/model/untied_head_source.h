// A view of a model whose output head is tied to its token embedding, as if it had its own
// output.weight: the same bytes under a second name, and a config that says the head is untied.
// Quantizing that head (elutq quantize --quantize-output) then needs no special case anywhere:
// the embedding stays as it is for the token lookup, and output.weight is quantized like any
// other linear layer. Decode speed is why: a 49k-token vocabulary's fp32 head is most of the
// bytes a small model reads per token.
#pragma once

#include <memory>

#include "tensor/model_source.h"

namespace elutq {

// Wraps a tied source (config().tied_embeddings). Throws Error if it is not tied. Owns inner.
std::unique_ptr<ModelSource> untie_output_head(std::unique_ptr<ModelSource> inner);

}  // namespace elutq
