// kiln CUDA prelude: the helpers every rendered kernel uses (kiln/codegen/cuda_render.py).
// Only CUDA built-ins are used here; the CPU harness (kiln/testing/cuda_harness) maps them to C++.
#define KILN_DEV __device__ __forceinline__

// -- float16 storage (computed in float32) ----------------------------------------------------
#ifndef KILN_HOST_HARNESS
KILN_DEV float kiln_h2f(unsigned short h) { float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f; }
KILN_DEV unsigned short kiln_f2h(float f) { unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h; }
#endif
KILN_DEV float kiln_round_h(float f) { return kiln_h2f(kiln_f2h(f)); }

// -- bfloat16 storage (computed in float32): the top 16 bits of a float32, rounded to nearest even
KILN_DEV float kiln_bf2f(unsigned short h) { return __int_as_float((int)((unsigned)h << 16)); }
KILN_DEV unsigned short kiln_f2bf(float f) {
  unsigned u = (unsigned)__float_as_int(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);  // nan stays a (quiet) nan
  return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
KILN_DEV float kiln_round_bf(float f) { return kiln_bf2f(kiln_f2bf(f)); }

// -- tensor cores: the part of nvcuda::wmma the GEMM kernels use (kiln/codegen/cuda_gemm.py), written
// on NVRTC's built-ins so that no CUDA header is needed. Row-major A (16 x K) and B (K x 16) tiles in
// shared memory, float accumulators; f16 and bf16 are m16n16k16, tf32 is m16n16k8 (sm_80 and later).
// A fragment's layout is opaque: the CPU harness (cuda_host.h) defines the same API in plain C++.
#ifndef KILN_HOST_HARNESS
namespace kiln_wmma {
struct frag_a_f16 { int x[8]; };
struct frag_b_f16 { int x[8]; };
struct frag_a_bf16 { int x[4]; };
struct frag_b_bf16 { int x[4]; };
struct frag_a_tf32 { float x[4]; };
struct frag_b_tf32 { float x[4]; };
struct frag_acc { float x[8]; };        // m16n16k16 accumulator
struct frag_acc_k8 { float x[8]; };     // m16n16k8 (tf32) accumulator
template <class F> KILN_DEV void fill_fragment(F& f, float v) {
  for (int i = 0; i < (int)(sizeof(f.x) / sizeof(f.x[0])); ++i) f.x[i] = v;
}
KILN_DEV void load_matrix_sync(frag_a_f16& f, const unsigned short* p, unsigned ldm) { __hmma_m16n16k16_ld_a(f.x, (const int*)p, ldm, 0); }
KILN_DEV void load_matrix_sync(frag_b_f16& f, const unsigned short* p, unsigned ldm) { __hmma_m16n16k16_ld_b(f.x, (const int*)p, ldm, 0); }
KILN_DEV void load_matrix_sync(frag_a_bf16& f, const unsigned short* p, unsigned ldm) { __mma_bf16_m16n16k16_ld_a(f.x, (const int*)p, ldm, 0); }
KILN_DEV void load_matrix_sync(frag_b_bf16& f, const unsigned short* p, unsigned ldm) { __mma_bf16_m16n16k16_ld_b(f.x, (const int*)p, ldm, 0); }
KILN_DEV void load_matrix_sync(frag_a_tf32& f, const float* p, unsigned ldm) { __mma_tf32_m16n16k8_ld_a((int*)f.x, (const int*)p, ldm, 0); }
KILN_DEV void load_matrix_sync(frag_b_tf32& f, const float* p, unsigned ldm) { __mma_tf32_m16n16k8_ld_b((int*)f.x, (const int*)p, ldm, 0); }
KILN_DEV float __float_to_tf32(float in) {
  float r;
  asm("{\n .reg .b32 t;\n cvt.rna.tf32.f32 t, %1;\n mov.b32 %0, t;\n}\n" : "=f"(r) : "f"(in));
  return r;
}
template <class F> KILN_DEV void to_tf32(F& f) {
  for (int i = 0; i < (int)(sizeof(f.x) / sizeof(f.x[0])); ++i) f.x[i] = __float_to_tf32(f.x[i]);
}
KILN_DEV void mma_sync(frag_acc& d, const frag_a_f16& a, const frag_b_f16& b, const frag_acc& c) { __hmma_m16n16k16_mma_f32f32(d.x, a.x, b.x, c.x, 0, 0); }
KILN_DEV void mma_sync(frag_acc& d, const frag_a_bf16& a, const frag_b_bf16& b, const frag_acc& c) { __mma_bf16_m16n16k16_mma_f32(d.x, a.x, b.x, c.x, 0, 0); }
KILN_DEV void mma_sync(frag_acc_k8& d, const frag_a_tf32& a, const frag_b_tf32& b, const frag_acc_k8& c) {
  __mma_tf32_m16n16k8_mma_f32(d.x, (const int*)a.x, (const int*)b.x, c.x, 0, 0);
}
KILN_DEV void store_matrix_sync(float* p, const frag_acc& f, unsigned ldm) { __hmma_m16n16k16_st_c_f32(p, f.x, ldm, 0); }
KILN_DEV void store_matrix_sync(float* p, const frag_acc_k8& f, unsigned ldm) { __mma_m16n16k8_st_c_f32(p, f.x, ldm, 0); }
}  // namespace kiln_wmma
#endif

// -- cp.async (sm_80): a 4-byte global -> shared copy that does not wait; `full` false zero-fills
#ifndef KILN_HOST_HARNESS
KILN_DEV void kiln_cp_async4(void* dst, const void* src, bool full) {
#if __CUDA_ARCH__ >= 800
  const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" :: "r"(s), "l"(src), "r"(full ? 4 : 0));
#else
  *(float*)dst = full ? *(const float*)src : 0.0f;
#endif
}
KILN_DEV void kiln_cp_async_commit() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::);
#endif
}
KILN_DEV void kiln_cp_async_wait_all() {
#if __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}
#endif

// -- numpy semantics the C operators lack ----------------------------------------------------
// float min/max propagate nan (numpy's minimum/maximum)
KILN_DEV float kiln_max(float a, float b) { return (a != a || b != b) ? (a + b) : fmaxf(a, b); }
KILN_DEV float kiln_min(float a, float b) { return (a != a || b != b) ? (a + b) : fminf(a, b); }
KILN_DEV double kiln_max(double a, double b) { return (a != a || b != b) ? (a + b) : fmax(a, b); }
KILN_DEV double kiln_min(double a, double b) { return (a != a || b != b) ? (a + b) : fmin(a, b); }
KILN_DEV int kiln_max(int a, int b) { return a > b ? a : b; }
KILN_DEV int kiln_min(int a, int b) { return a < b ? a : b; }
KILN_DEV long long kiln_max(long long a, long long b) { return a > b ? a : b; }
KILN_DEV long long kiln_min(long long a, long long b) { return a < b ? a : b; }
KILN_DEV bool kiln_max(bool a, bool b) { return a || b; }
KILN_DEV bool kiln_min(bool a, bool b) { return a && b; }

// wrapping integer arithmetic (C's signed overflow is undefined)
KILN_DEV int kiln_wadd(int a, int b) { return (int)((unsigned)a + (unsigned)b); }
KILN_DEV int kiln_wsub(int a, int b) { return (int)((unsigned)a - (unsigned)b); }
KILN_DEV int kiln_wmul(int a, int b) { return (int)((unsigned)a * (unsigned)b); }
KILN_DEV long long kiln_wadd(long long a, long long b) { return (long long)((unsigned long long)a + (unsigned long long)b); }
KILN_DEV long long kiln_wsub(long long a, long long b) { return (long long)((unsigned long long)a - (unsigned long long)b); }
KILN_DEV long long kiln_wmul(long long a, long long b) { return (long long)((unsigned long long)a * (unsigned long long)b); }
KILN_DEV bool kiln_wadd(bool a, bool b) { return a != b; }
KILN_DEV bool kiln_wsub(bool a, bool b) { return a != b; }
KILN_DEV bool kiln_wmul(bool a, bool b) { return a && b; }
// truncating division; a zero divisor gives 0 (as the kernel IR defines it)
KILN_DEV int kiln_idiv(int a, int b) { return b == 0 ? 0 : (b == -1 ? kiln_wsub(0, a) : a / b); }
KILN_DEV int kiln_irem(int a, int b) { return (b == 0 || b == -1) ? 0 : a % b; }
KILN_DEV long long kiln_idiv(long long a, long long b) { return b == 0 ? 0 : (b == -1 ? kiln_wsub(0LL, a) : a / b); }
KILN_DEV long long kiln_irem(long long a, long long b) { return (b == 0 || b == -1) ? 0 : a % b; }
// shifts take the amount modulo the width
KILN_DEV int kiln_shl(int a, int b) { return (int)((unsigned)a << (b & 31)); }
KILN_DEV int kiln_lshr(int a, int b) { return (int)((unsigned)a >> (b & 31)); }
KILN_DEV int kiln_ashr(int a, int b) { return a >> (b & 31); }
KILN_DEV long long kiln_shl(long long a, long long b) { return (long long)((unsigned long long)a << (b & 63)); }
KILN_DEV long long kiln_lshr(long long a, long long b) { return (long long)((unsigned long long)a >> (b & 63)); }
KILN_DEV long long kiln_ashr(long long a, long long b) { return a >> (b & 63); }
// float -> int saturates, nan -> 0
KILN_DEV int kiln_f2i32(double x) {
  if (x != x) return 0;
  x = trunc(x);
  if (x >= 2147483648.0) return 2147483647;
  if (x < -2147483648.0) return (-2147483647 - 1);
  return (int)x;
}
KILN_DEV long long kiln_f2i64(double x) {
  if (x != x) return 0;
  x = trunc(x);
  if (x >= 9223372036854775808.0) return 9223372036854775807LL;
  if (x < -9223372036854775808.0) return (-9223372036854775807LL - 1);
  return (long long)x;
}
KILN_DEV float kiln_logistic(float x) { float t = expf(-fabsf(x)); float s = 1.0f / (1.0f + t); return x >= 0.0f ? s : t * s; }
KILN_DEV double kiln_logistic(double x) { double t = exp(-fabs(x)); double s = 1.0 / (1.0 + t); return x >= 0.0 ? s : t * s; }

// -- checks: the first failure wins; the host reads status[0] (code) and status[1] (value) ----
KILN_DEV void kiln_fail(long long* status, long long code, long long value) {
  if (atomicCAS((unsigned long long*)status, 0ULL, (unsigned long long)code) == 0ULL) status[1] = value;
}

// -- block-wide reductions: warp shuffles, then one value per warp combined through shared memory.
// Every thread of the block calls them (uniform control flow); blockDim.x is a multiple of 32.
struct kiln_op_add { template <class T> KILN_DEV T operator()(T a, T b) const { return a + b; } };
struct kiln_op_mul { template <class T> KILN_DEV T operator()(T a, T b) const { return a * b; } };
struct kiln_op_max { template <class T> KILN_DEV T operator()(T a, T b) const { return kiln_max(a, b); } };
struct kiln_op_min { template <class T> KILN_DEV T operator()(T a, T b) const { return kiln_min(a, b); } };
struct kiln_op_or { template <class T> KILN_DEV T operator()(T a, T b) const { return a | b; } };
struct kiln_op_and { template <class T> KILN_DEV T operator()(T a, T b) const { return a & b; } };
struct kiln_op_iadd { template <class T> KILN_DEV T operator()(T a, T b) const { return kiln_wadd(a, b); } };
struct kiln_op_imul { template <class T> KILN_DEV T operator()(T a, T b) const { return kiln_wmul(a, b); } };

template <class T, class Op> KILN_DEV T kiln_block_reduce(T v, Op op) {
  __shared__ T kiln_part[32];
  __shared__ T kiln_total;
  for (int off = 16; off > 0; off >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, off));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  __syncthreads();  // the previous call's readers are done with kiln_part / kiln_total
  if (lane == 0) kiln_part[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    T w = kiln_part[0];
    for (int k = 1; k < nwarps; ++k) w = op(w, kiln_part[k]);
    kiln_total = w;
  }
  __syncthreads();
  return kiln_total;
}
