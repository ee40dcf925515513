// How the runtime runs the quantized layers of an elutq model file: the LinearFactory every tool
// (generate, chat, perplexity, logits) passes to Model, chosen by `--kernel lut|dequant`.
//   lut      quantized tensors in the LUT layout (uniform / HLQ, B <= 4) run on the bit-serial LUT
//            kernels straight from the mmap'ed file (no repacking, no copy); others (codebook,
//            uniform B > 4) are dequantized as with `dequant`. Q8_0, F16 and BF16 tensors kept
//            as they were (e.g. a tied output head) run on their stored bytes (StoredLinear), and
//            so do the K-quant (Q4_K, Q5_K, Q6_K, IQ4_XS), 32-weight block (Q4_0, Q4_1, Q5_0,
//            Q5_1, IQ4_NL) and Q8_0 (not on the scalar path) tensors of a standard GGUF file, on
//            integer kernels against int8 (K-quants) or int16 activations. The default.
//   dequant  every quantized tensor is dequantized exactly to fp32 at load and runs as a dense
//            layer: the reference path.
// With lut, `--lut-tables auto|int8|int16` picks the precision of the kernels' activation tables
// (LutTables in kernels/lut_matmul.h).
// Tensors that are not quantized (fp32/fp16/GGML types) load as make_dense_linear either way, so
// the factory is right for any model. With lut the ModelSource must outlive the Model (the kernels
// read the weights from its mapping).
#pragma once

#include <string>

#include "kernels/lut_matmul.h"
#include "model/linear.h"

namespace elutq {

enum class KernelChoice { Lut, Dequant };

// "lut" or "dequant"; throws Error naming the choices otherwise.
KernelChoice parse_kernel_choice(const std::string& name);

// Help text of the tools' --kernel option, kept in one place.
inline constexpr const char* kKernelOptionHelp =
    "how quantized layers run: lut = bit-serial lookup-table kernels on the packed bits "
    "(default; codebook formats fall back to dequant), dequant = exact dequantization to fp32 at "
    "load (the reference)";

// Help text of the tools' --lut-tables option (parsed by parse_lut_tables).
inline constexpr const char* kLutTablesOptionHelp =
    "with --kernel lut: precision of the activation lookup tables. auto (default): int8 for 3- "
    "and 4-bit layers; for 2-bit (and 1-bit) layers int12 on AVX2 CPUs and int16 on others. "
    "int8: fastest, ~0.7% error per matrix product; int12: ~16x smaller error, cheap on AVX2; "
    "int16: ~250x smaller error, two lookups per weight byte (figures: docs/RESULTS.md, "
    "\"LUT kernels\" and \"int12 activation tables\")";

LinearFactory make_linear_factory(KernelChoice kernel, LutTables tables = LutTables::Auto);

// What a tool passes as ModelOptions::linear_factory: make_linear_factory(kernel) if src holds any
// quantized (ELUTQ) tensor, or with lut a block projection in a type with an integer kernel (a
// llama.cpp file run at its stored size); else an empty factory, so other models load exactly as
// without one (e.g. tied embeddings stay shared with the output layer instead of being copied).
LinearFactory linear_factory_for(const ModelSource& src, KernelChoice kernel,
                                 LutTables tables = LutTables::Auto);

}  // namespace elutq
