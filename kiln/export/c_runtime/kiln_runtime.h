/* The kiln C runtime: runs one ahead-of-time compiled kiln program (see docs/export.md).
 *
 * A generated file describes the program (its buffers, where each lives, its entry point) in a
 * kiln_program; kiln_run validates the caller's pointers, allocates the workspace the memory plan
 * laid out, binds every buffer and runs the entry point on one thread or several (pthreads), then
 * turns a failed native check into a message. No Python, no LLVM. */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include <stdint.h>

/* error codes (the generated NAME.h repeats them as NAME_OK, ...) */
#define KILN_OK 0                    /* success */
#define KILN_ERROR_NULL_ARGUMENT 1   /* an input or output pointer is NULL */
#define KILN_ERROR_MISALIGNED 2      /* a pointer is not aligned to its element size */
#define KILN_ERROR_OUT_OF_MEMORY 3   /* the workspace could not be allocated */
#define KILN_ERROR_THREADS 4         /* a worker thread could not be joined */
#define KILN_ERROR_BOUNDS 5          /* a native check failed (an index out of bounds): see NAME_error_message() */

/* the compiled entry point: i32 (ptr buffers, ptr status, i64 tid, i64 n, ptr barrier) */
typedef int32_t (*kiln_entry_fn)(void **buffers, int64_t *status, int64_t tid, int64_t n, int64_t *barrier);

enum kiln_place { KILN_USER_INPUT, KILN_BLOB, KILN_WORKSPACE, KILN_USER_OUTPUT };

typedef struct {
    int32_t place;   /* enum kiln_place */
    int32_t index;   /* KILN_USER_INPUT / KILN_USER_OUTPUT: which argument */
    int64_t offset;  /* KILN_BLOB / KILN_WORKSPACE: byte offset */
} kiln_buffer;

typedef struct {
    const char *name;   /* the argument's name in NAME.h */
    int32_t buffer;     /* the program buffer that holds it */
    int64_t itemsize;   /* element size: the pointer's required alignment */
    int64_t nbytes;
    int32_t copy;       /* outputs: 1 when the value is not written in place (copied after the run) */
} kiln_argument;

typedef struct {
    const char *before, *after;  /* message = before + the failing index + after */
} kiln_check;

typedef struct {
    const char *model;
    kiln_entry_fn entry;
    int32_t n_buffers;
    const kiln_buffer *buffers;
    int32_t n_inputs;
    const kiln_argument *inputs;
    int32_t n_outputs;
    const kiln_argument *outputs;
    const unsigned char *blob;   /* the weights and literal arrays, embedded in the library */
    int64_t workspace_bytes;
    int32_t parallel;            /* 1 when the program's work is mostly in parallel loops */
    int32_t n_checks;
    const kiln_check *checks;
} kiln_program;

int kiln_run(const kiln_program *p, const void *const *inputs, void *const *outputs, int num_threads);
const char *kiln_error_message(void);

#endif
