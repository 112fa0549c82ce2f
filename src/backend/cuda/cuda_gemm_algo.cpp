// GemmAlgoTable (cuda_gemm_algo.h): the measured tile exceptions and their cuBLASLt calls.
#include "backend/cuda/cuda_gemm_algo.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/cuda/cuda_check.h"
#include "core/error.h"


namespace dm::cuda_util {

namespace {

// One exception: GEMMs of this N and K (K as the GEMM sees it: 2K for K-concatenated operands)
// with M in [m_lo, m_hi] prefer these tiles, in order. Measured on an NVIDIA H100 80GB HBM3
// (driver 580.159.04, CUDA 13.0's cuBLAS), session 9 call 2, µs: cuBLAS's pick → the tile's.
struct Exception {
  uint32_t N, K, m_lo, m_hi;
  cublasLtMatmulTile_t tiles[3];
};
constexpr uint32_t kAnyM = 0xffffffffu;
constexpr Exception kExceptions[] = {
    // 130m in_proj (768 → 3072): M 4,096 59.7 → 55.4, 16,384 215.9 → 193.3, 32,768 413.0 →
    // 377.2 (128×160); 8,192 (no 128×160 offered) 110.3 → 104.1 (176×128).
    {3072, 1536, 3072, kAnyM, {CUBLASLT_MATMUL_TILE_128x160, CUBLASLT_MATMUL_TILE_176x128}},
    // 130m out_proj (1536 → 768) at DeciMamba's ~2,000 rows: 20.8 → 15.6 (64×200), 20.7 → 16.5
    // (192×72 at 2,001 rows, where 64×200 is not offered).
    {768, 3072, 1024, 3071,
     {CUBLASLT_MATMUL_TILE_64x200, CUBLASLT_MATMUL_TILE_192x72, CUBLASLT_MATMUL_TILE_128x112}},
    // 2.8b x_proj (5120 → 192) at ~2,000 rows: 30.9 → 25.6, 31.5 → 25.4 (96×128).
    {192, 10240, 1024, 3071, {CUBLASLT_MATMUL_TILE_96x128}},
    // 2.8b dt_proj (160 → 5120): 2,000 rows 23.3 → 22.4, 4,096 44.2 → 40.5, 8,192 80.9 → 74.2,
    // 16,384 152.5 → 150.3, 32,768 291.3 → 272.5 (128×160).
    {5120, 320, 1024, kAnyM, {CUBLASLT_MATMUL_TILE_128x160}},
};

const Exception* find_exception(uint32_t M, uint32_t N, uint32_t K) {
  for (const Exception& e : kExceptions)
    if (e.N == N && e.K == K && M >= e.m_lo && M <= e.m_hi) return &e;
  return nullptr;
}

bool table_on() {  // DM_CUDA_GEMM_TABLE, read per call
  const char* e = std::getenv("DM_CUDA_GEMM_TABLE");
  if (!e || !*e || std::strcmp(e, "1") == 0) return true;
  if (std::strcmp(e, "0") == 0) return false;
  fail("[cuda] DM_CUDA_GEMM_TABLE must be 0 or 1, got '", e, "'");
}

// The largest power of two (≤ 256) that divides the address: what cuBLASLt may assume.
uint32_t alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t b = 256;
  while (b > 1 && a % b != 0) b /= 2;
  return b;
}

}  // namespace

struct GemmAlgoTable::Plan {
  bool use = false;
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t w = nullptr, x = nullptr, y = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (y) cublasLtMatrixLayoutDestroy(y);
    if (x) cublasLtMatrixLayoutDestroy(x);
    if (w) cublasLtMatrixLayoutDestroy(w);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

GemmAlgoTable::GemmAlgoTable(int device, void* workspace, size_t workspace_bytes)
    : workspace_(workspace), workspace_bytes_(workspace_bytes) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  measured_device_ = prop.major == 9 && prop.minor == 0 && prop.multiProcessorCount == 132;
  CUBLAS_CHECK(cublasLtCreate(&lt_));
}

GemmAlgoTable::~GemmAlgoTable() {
  for (auto& [key, p] : plans_) delete p;
  if (lt_) cublasLtDestroy(lt_);
}

// cuBLAS is column-major: row-major y (M×N) is yᵀ (N×M) = W (stored K×N, op T) · x (K×M).
const GemmAlgoTable::Plan& GemmAlgoTable::plan(const LtGemm& g) {
  const uint32_t aw = alignment(g.w), ax = alignment(g.x), ay = alignment(g.y);
  const std::array<uint32_t, 8> key{g.M,   g.N,   g.K,   g.ldw, g.ldx, g.ldy, uint32_t(g.type),
                                    aw | ax << 9 | ay << 18};
  if (auto it = plans_.find(key); it != plans_.end()) return *it->second;
  if (plans_.size() >= 512) {  // many prompt lengths: start over rather than grow without end
    for (auto& [k, p] : plans_) delete p;
    plans_.clear();
  }
  Plan* p = new Plan;
  plans_.emplace(key, p);
  const Exception* ex = find_exception(g.M, g.N, g.K);
  if (!ex) return *p;
  CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->w, g.type, g.K, g.N, g.ldw));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->x, g.type, g.K, g.M, g.ldx));
  CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->y, CUDA_R_32F, g.N, g.M, g.ldy));
  cublasLtMatmulPreference_t pref = nullptr;
  CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                       &workspace_bytes_, sizeof workspace_bytes_);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aw, 4);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ax, 4);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ay, 4);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ay, 4);
  cublasLtMatmulHeuristicResult_t res[8];
  int n = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(lt_, p->desc, p->w, p->x, p->y, p->y,
                                                           pref, 8, res, &n);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS) return *p;  // no candidates: cublasGemmEx decides
  for (const cublasLtMatmulTile_t want : ex->tiles) {
    if (p->use || want == CUBLASLT_MATMUL_TILE_UNDEFINED) break;  // chosen, or the list's end
    for (int i = 0; i < n && !p->use; ++i) {
      uint32_t tile = 0;
      size_t written = 0;
      if (res[i].state == CUBLAS_STATUS_SUCCESS &&
          cublasLtMatmulAlgoConfigGetAttribute(&res[i].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile,
                                               sizeof tile, &written) == CUBLAS_STATUS_SUCCESS &&
          tile == uint32_t(want) && res[i].workspaceSize <= workspace_bytes_) {
        p->algo = res[i].algo;
        p->use = true;
      }
    }
  }
  return *p;
}

bool GemmAlgoTable::run(const LtGemm& g, cudaStream_t stream) {
  if (!table_on() || !measured_device_) return false;  // a bad setting fails on any GPU
  const Plan& p = plan(g);
  if (!p.use) return false;
  const float one = 1.f;
  CUBLAS_CHECK(cublasLtMatmul(lt_, p.desc, &one, g.w, p.w, g.x, p.x, &g.beta, g.y, p.y, g.y, p.y,
                          &p.algo, workspace_, workspace_bytes_, stream));
  return true;
}

}  // namespace dm::cuda_util
