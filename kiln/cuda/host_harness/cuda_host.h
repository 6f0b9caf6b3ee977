// The CUDA built-ins kiln's emitted kernels use, mapped to C++17 so that g++ can compile and run
// the emitted CUDA C on the CPU (kiln/cuda/host_harness/__init__.py).
//
// A grid runs one block at a time; the threads of a block are fibers on the launching
// thread, each running until it reaches __syncthreads or the end of the block, then the next one:
// a barrier is one round of the fibers, so it costs context switches, not a wake-up of oversubscribed
// OS threads. Every thread of a block must reach the same number of barriers: a thread that returns
// while others wait at one makes the launch fail (kiln_host_run returns 1 and says where) instead of
// hanging. __shared__ variables are function statics (one block at a time uses them). Warp shuffles go
// through a per-block slot array with a barrier either side, so they need every thread of the block
// to call them together -- which the emitter guarantees (block reductions run in uniform control flow).
// Only C headers are included -- this header is compiled with every kernel library, and <cmath>
// alone would double the time g++ takes for one. The kernels call the C names (expf, exp, fmaxf...),
// so glibc's <math.h> is what they need: _GLIBCXX_INCLUDE_NEXT_C_HEADERS makes g++ take it instead of
// libstdc++'s wrapper (which includes <cmath>), as <cmath> itself does.
#pragma once
#define KILN_HOST_HARNESS 1
#define _GLIBCXX_INCLUDE_NEXT_C_HEADERS
#include <math.h>
#undef _GLIBCXX_INCLUDE_NEXT_C_HEADERS
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#if !defined(__x86_64__) || defined(KILN_HOST_UCONTEXT)
#include <ucontext.h>
#define KILN_HOST_USE_UCONTEXT 1
#endif

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))

struct kiln_dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local kiln_dim3 threadIdx, blockIdx;
inline kiln_dim3 blockDim, gridDim;

// -- the block's threads as fibers ---------------------------------------------------------------
// A fiber's context. On x86-64 a switch saves the callee-saved registers on the fiber's own stack
// and swaps stack pointers (no system call: swapcontext would also save the signal mask, a syscall
// per switch, and a row-mode block reduction switches ~30 times per thread and row); elsewhere (or
// with KILN_HOST_UCONTEXT) it is ucontext.
#ifdef KILN_HOST_USE_UCONTEXT
struct kiln_host_ctx { ucontext_t uc; };
inline void kiln_host_switch(kiln_host_ctx* from, kiln_host_ctx* to) { swapcontext(&from->uc, &to->uc); }
inline void kiln_host_ctx_init(kiln_host_ctx* c, kiln_host_ctx* back, char* stack, size_t size, void (*entry)()) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = size;
  c->uc.uc_link = &back->uc;
  makecontext(&c->uc, entry, 0);
}
#else
struct kiln_host_ctx { void* sp; };
// switch(from, to): push rbp, rbx, r12-r15, save rsp in from->sp, load to->sp, pop them, return there.
// noipa: callers must assume the whole ABI's caller-saved registers clobbered (with IPA register
// allocation g++ would see an asm body that names none and keep values in them across a barrier).
__attribute__((naked, noinline, noipa)) static void kiln_host_switch(kiln_host_ctx*, kiln_host_ctx*) {
  __asm__ volatile(
      "pushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n\t"
      "movq %rsp, (%rdi)\n\tmovq (%rsi), %rsp\n\t"
      "popq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n\tret\n\t");
}
// a fresh fiber's stack: six zero registers, then `entry` as the return address, placed so that
// entry starts with the stack aligned as after a call (rsp % 16 == 8)
inline void kiln_host_ctx_init(kiln_host_ctx* c, kiln_host_ctx*, char* stack, size_t size, void (*entry)()) {
  void** top = (void**)(((unsigned long long)(stack + size)) & ~15ULL);
  top -= 2;
  top[0] = (void*)entry;
  top[1] = nullptr;
  top -= 6;
  for (int k = 0; k < 6; ++k) top[k] = nullptr;
  c->sp = top;
}
#endif

enum { KILN_HOST_AT_BARRIER = 1, KILN_HOST_AT_END = 2 };
struct kiln_host_fiber { kiln_host_ctx ctx; int at; };
struct kiln_host_grid {      // one launch in progress on this OS thread
  kiln_host_ctx main;
  kiln_host_fiber* fibers;
  unsigned cur, grid;
  void (*body)(void*);
  void* arg;
};
inline thread_local kiln_host_grid* kiln_host_current = nullptr;

inline void kiln_host_yield(int at) {
  kiln_host_grid* g = kiln_host_current;
  kiln_host_fiber& f = g->fibers[g->cur];
  f.at = at;
  kiln_host_switch(&f.ctx, &g->main);
}
inline void __syncthreads() { kiln_host_yield(KILN_HOST_AT_BARRIER); }

inline void kiln_host_fiber_main() {
  kiln_host_grid* g = kiln_host_current;
  for (;;) {  // one block per resume after the block's last barrier; the scheduler stops resuming
    g->body(g->arg);
    kiln_host_yield(KILN_HOST_AT_END);
  }
}

// Fiber stacks: mmap'd once per library and reused by every launch, each with a guard page below it
// (an overflow faults instead of writing into the next stack). A launch that finds the pool in use
// (another OS thread launching from the same library) maps a pool of its own for the launch.
struct kiln_host_pool { char* base = nullptr; kiln_host_fiber* fibers = nullptr; unsigned n = 0; };
inline constexpr size_t kiln_host_stack_bytes = 256 << 10;
inline size_t kiln_host_slot_bytes() { return kiln_host_stack_bytes + (size_t)sysconf(_SC_PAGESIZE); }
inline bool kiln_host_pool_map(kiln_host_pool& p, unsigned n) {
  const size_t slot = kiln_host_slot_bytes(), page = (size_t)sysconf(_SC_PAGESIZE);
  void* m = mmap(nullptr, slot * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return false;
  p.base = (char*)m;
  for (unsigned t = 0; t < n; ++t) mprotect(p.base + t * slot, page, PROT_NONE);
  p.fibers = new kiln_host_fiber[n];
  p.n = n;
  return true;
}
inline void kiln_host_pool_unmap(kiln_host_pool& p) {
  if (p.base) munmap(p.base, kiln_host_slot_bytes() * p.n);
  delete[] p.fibers;
  p = kiln_host_pool{};
}
inline kiln_host_pool kiln_host_shared_pool;
inline int kiln_host_shared_busy = 0;

struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };

inline unsigned long long kiln_host_slots[1024];
template <class T> T __shfl_down_sync(unsigned, T v, int off) {
  static_assert(sizeof(T) <= 8, "shuffle of a wide type");
  unsigned long long bits = 0;
  memcpy(&bits, &v, sizeof(T));
  kiln_host_slots[threadIdx.x] = bits;
  __syncthreads();
  T out = v;
  const unsigned lane = threadIdx.x & 31u, src = threadIdx.x + (unsigned)off;
  if (lane + (unsigned)off < 32u && src < blockDim.x) memcpy(&out, &kiln_host_slots[src], sizeof(T));
  __syncthreads();
  return out;
}

inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long val) {
  __atomic_compare_exchange_n(p, &cmp, val, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return cmp;  // the old value
}

inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline int __float_as_int(float x) { int r; memcpy(&r, &x, 4); return r; }
inline float __int_as_float(int x) { float r; memcpy(&r, &x, 4); return r; }
inline long long __double_as_longlong(double x) { long long r; memcpy(&r, &x, 8); return r; }
inline double __longlong_as_double(long long x) { double r; memcpy(&r, &x, 8); return r; }
inline float kiln_h2f(unsigned short h) { _Float16 f; memcpy(&f, &h, 2); return (float)f; }
inline unsigned short kiln_f2h(float x) { _Float16 f = (_Float16)x; unsigned short h; memcpy(&h, &f, 2); return h; }

// The prelude's tensor-core API (kiln_wmma, nvcuda::wmma's names) in plain C++. A fragment's layout
// is opaque on the GPU, so here every thread of a warp holds the whole tile (row-major) and runs the
// warp-collective operations itself; a store is made by lane 0 only (the others would write the same
// values). f16/bf16 fragments keep their 16-bit storage; mma accumulates in float. tf32 rounding is
// emulated by truncating the float32 mantissa to tf32's 10 bits.
inline float kiln_host_bf2f(unsigned short h) { unsigned u = (unsigned)h << 16; float f; memcpy(&f, &u, 4); return f; }
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
  unsigned u; memcpy(&u, &in, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u &= 0xffffe000u;  // keep 10 of the 23 mantissa bits
  float r; memcpy(&r, &u, 4); return r;
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
  if (full) memcpy(dst, src, 4); else memset(dst, 0, 4);
}
inline void kiln_cp_async_commit() {}
inline void kiln_cp_async_wait_all() {}

// Run `body` as a grid of `grid` blocks of `block` threads, one block after the other. Each round
// resumes every fiber in thread order until it reaches a barrier or the block's end; a round in which
// some threads reached the end and others a barrier fails the launch: returns 1 with info = {block,
// threads at a barrier, threads that finished}. Returns 2 (info[0] = threads) if no stacks could be mapped.
template <class F> void kiln_host_call(void* f) { (*(F*)f)(); }
template <class F> int kiln_host_run(unsigned grid, unsigned block, F body, int* info) {
  gridDim.x = grid;
  blockDim.x = block;
  kiln_host_pool own, *pool = &kiln_host_shared_pool;
  const bool shared = __atomic_exchange_n(&kiln_host_shared_busy, 1, __ATOMIC_ACQUIRE) == 0;
  if (!shared) pool = &own;
  if (pool->n < block) {
    kiln_host_pool_unmap(*pool);
    if (!kiln_host_pool_map(*pool, block)) {
      if (shared) __atomic_store_n(&kiln_host_shared_busy, 0, __ATOMIC_RELEASE);
      info[0] = (int)block;
      return 2;
    }
  }
  kiln_host_grid g;
  g.fibers = pool->fibers;
  g.grid = grid;
  g.body = &kiln_host_call<F>;
  g.arg = &body;
  kiln_host_grid* outer = kiln_host_current;
  kiln_host_current = &g;
  const size_t slot = kiln_host_slot_bytes(), guard = slot - kiln_host_stack_bytes;
  for (unsigned t = 0; t < block; ++t) {
    kiln_host_ctx_init(&g.fibers[t].ctx, &g.main, pool->base + t * slot + guard, kiln_host_stack_bytes,
                       kiln_host_fiber_main);
  }
  int err = 0;
  for (unsigned b = 0; b < grid && !err; ++b) {
    for (;;) {
      unsigned at_barrier = 0, at_end = 0;
      for (unsigned t = 0; t < block; ++t) {
        g.cur = t;
        threadIdx.x = t;
        blockIdx.x = b;
        kiln_host_switch(&g.main, &g.fibers[t].ctx);
        if (g.fibers[t].at == KILN_HOST_AT_END) ++at_end; else ++at_barrier;
      }
      if (at_end == block) break;
      if (at_barrier != block) {
        info[0] = (int)b; info[1] = (int)at_barrier; info[2] = (int)at_end;
        err = 1;
      }
      if (err) break;
    }
  }
  kiln_host_current = outer;
  if (shared) __atomic_store_n(&kiln_host_shared_busy, 0, __ATOMIC_RELEASE);
  else kiln_host_pool_unmap(own);
  return err;
}
