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
