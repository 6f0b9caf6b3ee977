// The CUDA built-ins kiln's emitted kernels use, mapped to C++20 so that g++ can compile and run
// the emitted CUDA C on the CPU (kiln/cuda/host_harness/__init__.py).
//
// A grid runs one block at a time; the threads of a block are real threads (std::thread, reused for
// every block of the grid) meeting at a std::barrier for __syncthreads. __shared__ variables are function statics (one block at a
// time uses them). Warp shuffles go through a per-block slot array with a barrier either side, so
// they need every thread of the block to call them together -- which the emitter guarantees (block
// reductions run in uniform control flow).
#pragma once
#define KILN_HOST_HARNESS 1
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))

struct kiln_dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local kiln_dim3 threadIdx, blockIdx;
inline kiln_dim3 blockDim, gridDim;
inline std::barrier<>* kiln_host_barrier = nullptr;
inline void __syncthreads() { kiln_host_barrier->arrive_and_wait(); }

struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };

inline unsigned long long kiln_host_slots[1024];
template <class T> T __shfl_down_sync(unsigned, T v, int off) {
  static_assert(sizeof(T) <= 8, "shuffle of a wide type");
  unsigned long long bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  kiln_host_slots[threadIdx.x] = bits;
  __syncthreads();
  T out = v;
  const unsigned lane = threadIdx.x & 31u, src = threadIdx.x + (unsigned)off;
  if (lane + (unsigned)off < 32u && src < blockDim.x) std::memcpy(&out, &kiln_host_slots[src], sizeof(T));
  __syncthreads();
  return out;
}

inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long val) {
  __atomic_compare_exchange_n(p, &cmp, val, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return cmp;  // the old value
}

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline int __float_as_int(float x) { int r; std::memcpy(&r, &x, 4); return r; }
inline float __int_as_float(int x) { float r; std::memcpy(&r, &x, 4); return r; }
inline long long __double_as_longlong(double x) { long long r; std::memcpy(&r, &x, 8); return r; }
inline double __longlong_as_double(long long x) { double r; std::memcpy(&r, &x, 8); return r; }
inline float kiln_h2f(unsigned short h) { _Float16 f; std::memcpy(&f, &h, 2); return (float)f; }
inline unsigned short kiln_f2h(float x) { _Float16 f = (_Float16)x; unsigned short h; std::memcpy(&h, &f, 2); return h; }

// The prelude's tensor-core API (kiln_wmma, nvcuda::wmma's names) in plain C++. A fragment's layout
// is opaque on the GPU, so here every thread of a warp holds the whole tile (row-major) and runs the
// warp-collective operations itself; a store is made by lane 0 only (the others would write the same
// values). f16/bf16 fragments keep their 16-bit storage; mma accumulates in float. tf32 rounding is
// emulated by truncating the float32 mantissa to tf32's 10 bits.
inline float kiln_host_bf2f(unsigned short h) { unsigned u = (unsigned)h << 16; float f; std::memcpy(&f, &u, 4); return f; }
namespace kiln_wmma {
template <class T, int R, int C> struct tile { T x[R * C]; static constexpr int rows = R, cols = C; };
struct frag_a_f16 : tile<unsigned short, 16, 16> {};
struct frag_b_f16 : tile<unsigned short, 16, 16> {};
struct frag_a_bf16 : tile<unsigned short, 16, 16> {};
struct frag_b_bf16 : tile<unsigned short, 16, 16> {};
struct frag_a_tf32 : tile<float, 16, 8> {};
struct frag_b_tf32 : tile<float, 8, 16> {};
struct frag_acc : tile<float, 16, 16> {};
struct frag_acc_k8 : tile<float, 16, 16> {};
template <class F> void fill_fragment(F& f, float v) { for (auto& e : f.x) e = v; }
template <class F, class T> void load_tile(F& f, const T* p, unsigned ldm) {
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = p[(long long)r * ldm + c];
}
inline void load_matrix_sync(frag_a_f16& f, const unsigned short* p, unsigned ldm) { load_tile(f, p, ldm); }
inline void load_matrix_sync(frag_b_f16& f, const unsigned short* p, unsigned ldm) { load_tile(f, p, ldm); }
inline void load_matrix_sync(frag_a_bf16& f, const unsigned short* p, unsigned ldm) { load_tile(f, p, ldm); }
inline void load_matrix_sync(frag_b_bf16& f, const unsigned short* p, unsigned ldm) { load_tile(f, p, ldm); }
inline void load_matrix_sync(frag_a_tf32& f, const float* p, unsigned ldm) { load_tile(f, p, ldm); }
inline void load_matrix_sync(frag_b_tf32& f, const float* p, unsigned ldm) { load_tile(f, p, ldm); }
inline float __float_to_tf32(float in) {
  unsigned u; std::memcpy(&u, &in, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u &= 0xffffe000u;  // keep 10 of the 23 mantissa bits
  float r; std::memcpy(&r, &u, 4); return r;
}
template <class F> void to_tf32(F& f) { for (auto& e : f.x) e = __float_to_tf32(e); }
inline float kiln_host_val(unsigned short h, bool bf) { return bf ? kiln_host_bf2f(h) : kiln_h2f(h); }
inline float kiln_host_val(float v, bool) { return v; }
template <class D, class A, class B> void mma_tile(D& d, const A& a, const B& b, const D& c, bool bf) {
  D out;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      float s = c.x[i * 16 + j];
      for (int k = 0; k < A::cols; ++k) s += kiln_host_val(a.x[i * A::cols + k], bf) * kiln_host_val(b.x[k * 16 + j], bf);
      out.x[i * 16 + j] = s;
    }
  d = out;
}
inline void mma_sync(frag_acc& d, const frag_a_f16& a, const frag_b_f16& b, const frag_acc& c) { mma_tile(d, a, b, c, false); }
inline void mma_sync(frag_acc& d, const frag_a_bf16& a, const frag_b_bf16& b, const frag_acc& c) { mma_tile(d, a, b, c, true); }
inline void mma_sync(frag_acc_k8& d, const frag_a_tf32& a, const frag_b_tf32& b, const frag_acc_k8& c) { mma_tile(d, a, b, c, false); }
template <class F> void store_tile(float* p, const F& f, unsigned ldm) {
  if ((threadIdx.x & 31u) != 0u) return;
  for (int r = 0; r < 16; ++r)
    for (int c = 0; c < 16; ++c) p[(long long)r * ldm + c] = f.x[r * 16 + c];
}
inline void store_matrix_sync(float* p, const frag_acc& f, unsigned ldm) { store_tile(p, f, ldm); }
inline void store_matrix_sync(float* p, const frag_acc_k8& f, unsigned ldm) { store_tile(p, f, ldm); }
}  // namespace kiln_wmma

// cp.async (sm_80): the copy happens at once, so commit and wait have nothing to wait for
inline void kiln_cp_async4(void* dst, const void* src, bool full) {
  if (full) std::memcpy(dst, src, 4); else std::memset(dst, 0, 4);
}
inline void kiln_cp_async_commit() {}
inline void kiln_cp_async_wait_all() {}

// Run `body` as a grid of `grid` blocks of `block` threads.
// Run `body` as a grid of `grid` blocks of `block` threads: `block` real threads, each running its
// part of every block in turn, meeting at a barrier between blocks (so that no thread of the next
// block touches the __shared__ statics while one of this block still reads them).
template <class F> void kiln_host_run(unsigned grid, unsigned block, F body) {
  gridDim.x = grid;
  blockDim.x = block;
  std::barrier<> bar(block);
  kiln_host_barrier = &bar;
  std::vector<std::thread> threads;
  threads.reserve(block);
  for (unsigned t = 0; t < block; ++t)
    threads.emplace_back([&body, &bar, grid, t] {
      threadIdx.x = t;
      for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = b;
        body();
        bar.arrive_and_wait();
      }
    });
  for (auto& th : threads) th.join();
}
