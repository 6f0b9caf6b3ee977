/* The kiln C runtime (see kiln_runtime.h). */
#define _POSIX_C_SOURCE 200809L
#include "kiln_runtime.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KILN_MAX_BUFFERS_ON_STACK 256

static _Thread_local char kiln_error[1024];

const char *kiln_error_message(void) { return kiln_error; }

static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kiln_error, sizeof kiln_error, fmt, ap);
    va_end(ap);
    return code;
}

typedef struct {
    const kiln_program *p;
    void **buffers;
    int64_t *status;
    int64_t *barrier;
    int64_t tid, n;
    pthread_mutex_t *lock;
    pthread_cond_t *go_cond;
    int *go;  /* 0: wait, 1: run, -1: start failed elsewhere, return */
    int64_t *n_shared;
} kiln_worker;

static void *worker_main(void *arg) {
    kiln_worker *w = (kiln_worker *)arg;
    pthread_mutex_lock(w->lock);
    while (*w->go == 0) pthread_cond_wait(w->go_cond, w->lock);
    int go = *w->go;
    int64_t n = *w->n_shared;
    pthread_mutex_unlock(w->lock);
    if (go == 1 && w->tid < n) w->p->entry(w->buffers, w->status, w->tid, n, w->barrier);
    return NULL;
}

static int64_t default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int64_t)n : 1;
}

/* run the entry point on n threads (this one is tid 0); threads that fail to start shrink n */
static int run_entry(const kiln_program *p, void **buffers, int64_t *status, int64_t n) {
    int64_t barrier[2] = {0, 0};
    if (n <= 1) return p->entry(buffers, status, 0, 1, barrier);
    pthread_t threads[64];
    kiln_worker workers[64];
    if (n > 64) n = 64;
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t go_cond = PTHREAD_COND_INITIALIZER;
    int go = 0;
    int64_t n_shared = n, started = 1;
    for (int64_t t = 1; t < n; t++) {
        workers[t] = (kiln_worker){p, buffers, status, barrier, t, n, &lock, &go_cond, &go, &n_shared};
        if (pthread_create(&threads[t], NULL, worker_main, &workers[t]) != 0) break;
        started++;
    }
    pthread_mutex_lock(&lock);
    n_shared = started;  /* every started worker reads the final count before it runs */
    go = 1;
    pthread_cond_broadcast(&go_cond);
    pthread_mutex_unlock(&lock);
    int rc = p->entry(buffers, status, 0, started, barrier);
    int join_failed = 0;
    for (int64_t t = 1; t < started; t++)
        if (pthread_join(threads[t], NULL) != 0) join_failed = 1;
    if (join_failed && rc == 0) return -1;
    return rc;
}

int kiln_run(const kiln_program *p, const void *const *inputs, void *const *outputs, int num_threads) {
    kiln_error[0] = '\0';
    for (int32_t k = 0; k < p->n_inputs; k++) {
        const kiln_argument *a = &p->inputs[k];
        if (inputs[k] == NULL)
            return fail(KILN_ERROR_NULL_ARGUMENT, "%s: input '%s' is NULL", p->model, a->name);
        if ((uintptr_t)inputs[k] % (uintptr_t)a->itemsize)
            return fail(KILN_ERROR_MISALIGNED, "%s: input '%s' (%p) is not aligned to its element size %lld",
                        p->model, a->name, inputs[k], (long long)a->itemsize);
    }
    for (int32_t k = 0; k < p->n_outputs; k++) {
        const kiln_argument *a = &p->outputs[k];
        if (outputs[k] == NULL)
            return fail(KILN_ERROR_NULL_ARGUMENT, "%s: output '%s' is NULL", p->model, a->name);
        if ((uintptr_t)outputs[k] % (uintptr_t)a->itemsize)
            return fail(KILN_ERROR_MISALIGNED, "%s: output '%s' (%p) is not aligned to its element size %lld",
                        p->model, a->name, outputs[k], (long long)a->itemsize);
    }
    unsigned char *workspace = NULL;
    if (p->workspace_bytes > 0) {
        if (posix_memalign((void **)&workspace, 64, (size_t)p->workspace_bytes) != 0)
            return fail(KILN_ERROR_OUT_OF_MEMORY, "%s: cannot allocate the %lld-byte workspace", p->model,
                        (long long)p->workspace_bytes);
    }
    void *on_stack[KILN_MAX_BUFFERS_ON_STACK];
    void **buffers = on_stack;
    if (p->n_buffers > KILN_MAX_BUFFERS_ON_STACK) {
        buffers = (void **)malloc(sizeof(void *) * (size_t)p->n_buffers);
        if (buffers == NULL) {
            free(workspace);
            return fail(KILN_ERROR_OUT_OF_MEMORY, "%s: cannot allocate the buffer table", p->model);
        }
    }
    for (int32_t k = 0; k < p->n_buffers; k++) {
        const kiln_buffer *b = &p->buffers[k];
        switch (b->place) {
        case KILN_USER_INPUT: buffers[k] = (void *)inputs[b->index]; break;
        case KILN_USER_OUTPUT: buffers[k] = outputs[b->index]; break;
        case KILN_BLOB: buffers[k] = (void *)(p->blob + b->offset); break;
        default: buffers[k] = workspace + b->offset; break;
        }
    }
    int64_t status[4] = {0, 0, 0, 0};
    int64_t n = 1;
    if (p->parallel) n = num_threads > 0 ? num_threads : default_threads();
    int rc = run_entry(p, buffers, status, n);
    int result = KILN_OK;
    if (rc == -1) {
        result = fail(KILN_ERROR_THREADS, "%s: a worker thread could not be joined", p->model);
    } else if (rc != 0) {
        if (rc >= 1 && rc <= p->n_checks)
            result = fail(KILN_ERROR_BOUNDS, "%s%lld%s", p->checks[rc - 1].before, (long long)status[1],
                          p->checks[rc - 1].after);
        else
            result = fail(KILN_ERROR_BOUNDS, "%s: native code reported unknown check %d", p->model, rc);
    } else {
        for (int32_t k = 0; k < p->n_outputs; k++)  /* values not written in place: an input, a weight, ... */
            if (p->outputs[k].copy)
                memcpy(outputs[k], buffers[p->outputs[k].buffer], (size_t)p->outputs[k].nbytes);
    }
    if (buffers != on_stack) free(buffers);
    free(workspace);
    return result;
}
