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
    {DType::F32, "F32", 1, 4},      {DType::F16, "F16", 1, 2},       {DType::BF16, "BF16", 1, 2},
    {DType::Q4_0, "Q4_0", 32, 18},  {DType::Q4_1, "Q4_1", 32, 20},   {DType::Q5_0, "Q5_0", 32, 22},
    {DType::Q5_1, "Q5_1", 32, 24},  {DType::Q8_0, "Q8_0", 32, 34},   {DType::Q2_K, "Q2_K", 256, 84},
    {DType::Q3_K, "Q3_K", 256, 110}, {DType::Q4_K, "Q4_K", 256, 144}, {DType::Q5_K, "Q5_K", 256, 176},
    {DType::Q6_K, "Q6_K", 256, 210},
    {DType::I8, "I8", 1, 1},        {DType::I16, "I16", 1, 2},       {DType::I32, "I32", 1, 4},
    {DType::I64, "I64", 1, 8},      {DType::F64, "F64", 1, 8},
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

int64_t dtype_block_elems(DType t) { return row_or_fail(t).block_elems; }
int64_t dtype_block_bytes(DType t) { return row_or_fail(t).block_bytes; }

uint64_t dtype_row_bytes(DType t, int64_t n) {
  const DTypeRow& r = row_or_fail(t);
  require(n >= 0 && n % r.block_elems == 0, "a row of ", n, " elements is not a whole number of ",
          r.name, " blocks (", r.block_elems, " elements each)");
  return static_cast<uint64_t>(n / r.block_elems) * static_cast<uint64_t>(r.block_bytes);
}

}  // namespace elutq
