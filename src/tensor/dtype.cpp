#include "tensor/dtype.h"

#include "core/error.h"

namespace elutq {
namespace {

struct DTypeRow {
  DType type;
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
};

// Block layouts of the GGML types, from the GGUF specification.
constexpr DTypeRow kRows[] = {
    {DType::F32, "F32", 1, 4},             {DType::F16, "F16", 1, 2},
    {DType::BF16, "BF16", 1, 2},           {DType::Q4_0, "Q4_0", 32, 18},
    {DType::Q4_1, "Q4_1", 32, 20},         {DType::Q5_0, "Q5_0", 32, 22},
    {DType::Q5_1, "Q5_1", 32, 24},         {DType::Q8_0, "Q8_0", 32, 34},
    {DType::Q2_K, "Q2_K", 256, 84},        {DType::Q3_K, "Q3_K", 256, 110},
    {DType::Q4_K, "Q4_K", 256, 144},       {DType::Q5_K, "Q5_K", 256, 176},
    {DType::Q6_K, "Q6_K", 256, 210},       {DType::Q8_K, "Q8_K", 256, 292},
    {DType::IQ2_XXS, "IQ2_XXS", 256, 66},  {DType::IQ2_XS, "IQ2_XS", 256, 74},
    {DType::IQ2_S, "IQ2_S", 256, 82},      {DType::IQ3_XXS, "IQ3_XXS", 256, 98},
    {DType::IQ3_S, "IQ3_S", 256, 110},     {DType::IQ1_S, "IQ1_S", 256, 50},
    {DType::IQ1_M, "IQ1_M", 256, 56},      {DType::IQ4_NL, "IQ4_NL", 32, 18},
    {DType::IQ4_XS, "IQ4_XS", 256, 136},   {DType::TQ1_0, "TQ1_0", 256, 54},
    {DType::TQ2_0, "TQ2_0", 256, 66},      {DType::MXFP4, "MXFP4", 32, 17},
    {DType::NVFP4, "NVFP4", 64, 36},       {DType::I8, "I8", 1, 1},
    {DType::I16, "I16", 1, 2},             {DType::I32, "I32", 1, 4},
    {DType::I64, "I64", 1, 8},             {DType::F64, "F64", 1, 8},
};

const DTypeRow* row(DType t) {
  for (const auto& r : kRows)
    if (r.type == t) return &r;
  return nullptr;
}

const DTypeRow& row_or_fail(DType t) {
  const DTypeRow* r = row(t);
  if (!r) fail("unsupported tensor type ", static_cast<uint32_t>(t));
  return *r;
}

}  // namespace

std::string dtype_name(DType t) {
  if (t == DType::ELUTQ) return "ELUTQ";
  const DTypeRow* r = row(t);
  return r ? r->name : "unknown(" + std::to_string(static_cast<uint32_t>(t)) + ")";
}

bool dtype_known(uint32_t t) { return row(static_cast<DType>(t)) != nullptr; }

std::string dtype_known_names() {
  std::string s;
  for (const auto& r : kRows) s += (s.empty() ? "" : ", ") + std::string(r.name);
  return s;
}

int64_t dtype_block_elems(DType t) { return row_or_fail(t).block_elems; }
int64_t dtype_block_bytes(DType t) { return row_or_fail(t).block_bytes; }

uint64_t dtype_row_bytes(DType t, int64_t n) {
  const DTypeRow& r = row_or_fail(t);
  require(n >= 0 && n % r.block_elems == 0, "a row of ", n, " elements is not a whole number of ",
          r.name, " blocks (", r.block_elems, " elements each)");
  return static_cast<uint64_t>(n / r.block_elems) * static_cast<uint64_t>(r.block_bytes);
}

}  // namespace elutq
