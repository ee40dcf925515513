// The LUT matmul driver: prepares the activation tables once per call (shared by all threads),
// then, one pass of tokens at a time (their tables fit in L2), splits the weight tiles (equal
// bytes each) over the thread pool, the caller included.
#include "kernels/lut_matmul.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <unistd.h>

#include "core/aligned_vector.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "kernels/dispatch.h"
#include "kernels/lut_isa.h"

namespace elutq {
namespace {

// Per-call buffers of the calling thread, grown on demand and kept (no allocation per call once
// the largest shape has been seen).
struct SharedScratch {
  AlignedVector<int8_t> tables;    // (n, n_groups, quads, 64 or 128); 64-byte loads
  std::vector<float> scale_half;   // (n, n_groups)
  std::vector<float> sum_x;        // (n, n_groups)
};

// One token: zero-pads x per group into xpad, computes each group's table scale and sum in a fixed
// order (so every ISA sees the same floats), then builds its tables with the ISA's builder. The
// group's largest |sum| maps to table_max (127 for int8, lut_wide_max for the wide tables, whose
// low parts have low_bits bits; low_bits 0: int8).
void prepare_token(const LutIsaKernels& k, const PackedHeader& h, int low_bits, const float* x,
                   int8_t* tables, float* scale_half, float* sum_x) {
  thread_local std::vector<float> xpad;  // (n_groups, group_padded)
  thread_local std::vector<float> inv;   // (n_groups)
  const int64_t gp = h.group_padded, G = h.group_len;
  const bool wide = low_bits > 0;
  const float table_max = wide ? float(lut_wide_max(gp / 4, low_bits)) : 127.0f;
  xpad.assign(size_t(h.n_groups * gp), 0.0f);
  inv.resize(size_t(h.n_groups));
  for (int64_t g = 0; g < h.n_groups; ++g) {
    const int64_t len = std::min<int64_t>(G, h.cols - g * G);
    std::copy(x + g * G, x + g * G + len, xpad.begin() + g * gp);
    const float* xg = xpad.data() + g * gp;
    float max_abs = 0.0f, sum = 0.0f;
    for (int64_t c = 0; c < gp; c += 4) {
      const float a = ((std::fabs(xg[c]) + std::fabs(xg[c + 1])) + std::fabs(xg[c + 2])) +
                      std::fabs(xg[c + 3]);
      max_abs = std::max(max_abs, a);
      sum += ((xg[c] + xg[c + 1]) + xg[c + 2]) + xg[c + 3];
    }
    inv[size_t(g)] = max_abs > 0.0f ? table_max / max_abs : 0.0f;
    scale_half[g] = max_abs * (0.5f / table_max);
    sum_x[g] = sum;
  }
  if (wide) {
    k.build_tables_wide(xpad.data(), inv.data(), h.n_groups, gp / 4, low_bits, tables);
  } else {
    k.build_tables(xpad.data(), inv.data(), h.n_groups, gp / 4, tables);
  }
}

// At least this many tiles per piece of work: the GEMVs read a piece as up to kGemvStreams
// interleaved streams of tiles (4 measured best of 2, 4 and 8: see docs/RESULTS.md, section "LUT
// kernels", "Decode in several streams").
constexpr int64_t kMinTilesPerPiece = 4;

}  // namespace

int64_t lut_table_budget_bytes() {
  static const int64_t budget = [] {
    long l2 = 0;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return std::max<int64_t>(int64_t(512) << 10, l2 > 0 ? int64_t(l2) / 4 * 3 : 0);
  }();
  return budget;
}

LutTables parse_lut_tables(const std::string& name) {
  if (name == "int8") return LutTables::Int8;
  if (name == "int12") return LutTables::Int12;
  if (name == "int16") return LutTables::Int16;
  if (name == "auto") return LutTables::Auto;
  fail("unknown LUT table precision '", name, "'; expected int8, int12, int16 or auto");
}

const char* lut_tables_name(LutTables tables) {
  switch (tables) {
    case LutTables::Int12: return "int12";
    case LutTables::Int16: return "int16";
    case LutTables::Auto: return "auto";
    default: return "int8";
  }
}

LutTables resolve_lut_tables(LutTables tables, int bits, int64_t group_padded, Isa isa) {
  if (tables != LutTables::Auto) return tables;
  const bool wide_fits = lut_wide_max(group_padded / 4, 8) >= 127;
  if (bits > 2 || !wide_fits) return LutTables::Int8;
  return isa == Isa::Avx2 ? LutTables::Int12 : LutTables::Int16;
}

UnitLayout lut_unit_layout(Isa isa) {
  return isa == Isa::Avx2 ? UnitLayout::Rows32 : UnitLayout::Tables4;
}

PackedMatrix lut_matrix_for(PackedMatrix w, Isa isa) {
  return PackedMatrix::relaid(std::move(w), lut_unit_layout(isa));
}

bool lut_tables_shareable(const PackedMatrix& a, const PackedMatrix& b, LutTables tables,
                          Isa isa) {
  const PackedHeader &ha = a.header(), &hb = b.header();
  return ha.cols == hb.cols && ha.group_len == hb.group_len && ha.group_padded == hb.group_padded &&
         a.layout() == b.layout() &&
         resolve_lut_tables(tables, ha.bits, ha.group_padded, isa) ==
             resolve_lut_tables(tables, hb.bits, hb.group_padded, isa);
}

void lut_gemm_same_input_isa(Isa isa, std::span<const PackedMatrix* const> ws, const float* X,
                             int64_t n, std::span<float* const> Ys, ThreadPool* pool,
                             LutTables precision) {
  require(!ws.empty() && ws.size() == Ys.size() && ws.size() <= kLutMaxSameInput, "LUT matmul: ",
          ws.size(), " matrices and ", Ys.size(), " outputs; one output per matrix, 1 to ",
          kLutMaxSameInput, " matrices");
  for (const PackedMatrix* w : ws) {
    require(w != nullptr && !w->empty(), "LUT matmul on an empty packed matrix");
    require(w->layout() == lut_unit_layout(isa), "the ", isa_name(isa),
            " LUT kernels read another unit layout than this packed matrix has; convert it once "
            "with lut_matrix_for()");
    require(lut_tables_shareable(*ws[0], *w, precision, isa),
            "LUT matmul of several matrices on one input: they must have the same columns, group "
            "and table precision (", ws[0]->cols(), " vs ", w->cols(), " columns)");
  }
  require(n >= 0, "LUT matmul with a negative token count");
  if (n == 0) return;
  const LutIsaKernels& k = *isa_kernels(isa).lut;
  const PackedHeader& h = ws[0]->header();  // the table shape all of them share
  const LutTables resolved = resolve_lut_tables(precision, h.bits, h.group_padded, isa);
  const int low_bits = resolved == LutTables::Int16 ? 8 : resolved == LutTables::Int12 ? 6 : 0;
  const bool wide = low_bits > 0;
  const int64_t quads = h.group_padded / kLutQuadCols;
  require(!wide || lut_wide_max(h.group_padded / 4, low_bits) >= 127, "groups of ",
          h.group_padded, " columns are too long for ", lut_tables_name(resolved),
          " LUT tables (int32 sums could overflow); use int8 tables or a smaller group");
  const int64_t quad_bytes = wide ? 2 * kLutUnitBytes : kLutUnitBytes;
  const int64_t table_bytes = h.n_groups * quads * quad_bytes;  // per token

  thread_local SharedScratch s;
  s.tables.resize(size_t(n * table_bytes));
  s.scale_half.resize(size_t(n * h.n_groups));
  s.sum_x.resize(size_t(n * h.n_groups));
  // Plain pointers: a lambda naming the thread_local `s` would see each worker's own copy.
  int8_t* tables = s.tables.data();
  float* scale_half = s.scale_half.data();
  float* sum_x = s.sum_x.data();
  auto prepare = [&](int64_t t) {
    prepare_token(k, h, low_bits, X + t * h.cols, tables + t * table_bytes,
                  scale_half + t * h.n_groups, sum_x + t * h.n_groups);
  };
  if (pool && pool->size() > 1 && n > 1) {
    pool->parallel_for(n, prepare);
  } else {
    for (int64_t t = 0; t < n; ++t) prepare(t);
  }

  // The matrices' tiles numbered one after another: matrix i holds tiles first_tile[i] up to
  // first_tile[i + 1].
  // Pieces of work are cut from that one range, so a piece may end in one matrix and go on in the
  // next; each matrix's part of it is one call of its kernel.
  int64_t first_tile[kLutMaxSameInput + 1] = {0};
  int64_t tile_bytes = 0;  // the largest: sets the piece length below
  for (size_t i = 0; i < ws.size(); ++i) {
    const PackedHeader& hi = ws[i]->header();
    first_tile[i + 1] = first_tile[i] + hi.n_tiles;
    tile_bytes = std::max(tile_bytes, hi.n_groups * hi.block_bytes);
  }
  const int64_t n_tiles = first_tile[ws.size()];

  // Tokens per pass: as many as have tables in the L2 budget, a multiple of 12 (the kernels'
  // register blocks of 4 and 6 tokens). Without passes each piece of tiles below read every
  // token's tables (8 MiB for 512 tokens at 4096 columns) from L3.
  const int64_t pass = std::max<int64_t>(12, lut_table_budget_bytes() / table_bytes / 12 * 12);
  for (int64_t t0 = 0; t0 < n; t0 += pass) {
    LutActivations a;
    a.n = std::min(pass, n - t0);
    a.n_groups = h.n_groups;
    a.quads_per_group = quads;
    a.wide = wide;
    a.low_bits = low_bits;
    a.quad_bytes = quad_bytes;
    a.tables = tables + t0 * table_bytes;
    a.scale_half = scale_half + t0 * h.n_groups;
    a.sum_x = sum_x + t0 * h.n_groups;
    auto run_tiles = [&](int64_t begin, int64_t end) {
      for (size_t i = 0; i < ws.size(); ++i) {
        const int64_t b = std::max(begin, first_tile[i]), e = std::min(end, first_tile[i + 1]);
        if (b >= e) continue;
        float* Yi = Ys[i] + t0 * ws[i]->rows();
        k.matmul_tiles(*ws[i], a, b - first_tile[i], e - first_tile[i], Yi);
      }
    };
    if (pool && pool->size() > 1 && n_tiles > 1) {
      // Tiles go out in pieces claimed on demand, so a thread slowed down by another process
      // takes fewer: several pieces per thread, each still long enough (~64 KiB of weights and at
      // least kMinTilesPerPiece tiles, where that still leaves 8 pieces per thread) for the
      // hardware prefetcher to stream it.
      const int64_t by_bytes = ((int64_t(64) << 10) + tile_bytes - 1) / tile_bytes;
      const int64_t by_balance = std::max<int64_t>(1, n_tiles / (8 * pool->size()));
      pool->parallel_chunks(n_tiles, std::min(std::max(by_bytes, kMinTilesPerPiece), by_balance),
                            run_tiles);
    } else {
      run_tiles(0, n_tiles);
    }
  }
}

void lut_gemm_isa(Isa isa, const PackedMatrix& w, const float* X, int64_t n, float* Y,
                  ThreadPool* pool, LutTables precision) {
  const PackedMatrix* ws[] = {&w};
  float* Ys[] = {Y};
  lut_gemm_same_input_isa(isa, ws, X, n, Ys, pool, precision);
}

void lut_gemm(const PackedMatrix& w, const float* X, int64_t n, float* Y, ThreadPool* pool,
              LutTables tables) {
  lut_gemm_isa(active_isa(), w, X, n, Y, pool, tables);
}

void lut_gemv(const PackedMatrix& w, const float* x, float* y, ThreadPool* pool,
              LutTables tables) {
  lut_gemm_isa(active_isa(), w, x, 1, y, pool, tables);
}

}  // namespace elutq
