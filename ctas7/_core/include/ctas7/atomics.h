/*
 * ctas7/atomics.h -- the few atomic, waiting and clock primitives the rings
 * need, as static inline wrappers over the GCC/Clang __atomic builtins.
 *
 * Everything here works on memory shared between processes: the futex calls
 * deliberately do NOT use FUTEX_PRIVATE_FLAG, so a waiter in one process is
 * woken by a store + wake in another process mapping the same page.
 */
#ifndef CTAS7_ATOMICS_H
#define CTAS7_ATOMICS_H

#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <sched.h>

#if defined(__linux__)
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/futex.h>
#define CTAS7_HAVE_FUTEX 1
#else
#define CTAS7_HAVE_FUTEX 0
#endif

#define CTAS7_CACHE_LINE 128

/* ---- 64-bit ----------------------------------------------------------- */

static inline uint64_t ctas7_load_relaxed_u64(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline uint64_t ctas7_load_acquire_u64(const uint64_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void ctas7_store_relaxed_u64(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void ctas7_store_release_u64(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline uint64_t ctas7_fetch_add_u64(uint64_t *p, uint64_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
}
/* Strong CAS; on failure *expected receives the current value. */
static inline int ctas7_cas_u64(uint64_t *p, uint64_t *expected, uint64_t desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* ---- 32-bit (futex words) --------------------------------------------- */

static inline uint32_t ctas7_load_acquire_u32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void ctas7_store_release_u32(uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline uint32_t ctas7_fetch_add_u32(uint32_t *p, uint32_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
}
static inline int ctas7_cas_u32(uint32_t *p, uint32_t *expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, expected, desired, 0,
                                       __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* Full barrier: orders a store before a later load (Dekker-style handshake
 * between "I am going to sleep" and "is anyone sleeping?"). */
static inline void ctas7_fence_seq_cst(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* ---- waiting ----------------------------------------------------------- */

static inline void ctas7_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
#endif
}

static inline void ctas7_thread_yield(void) { sched_yield(); }

static inline uint64_t ctas7_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void ctas7_sleep_ns(uint64_t ns) {
    struct timespec ts;
    ts.tv_sec = (time_t)(ns / 1000000000ull);
    ts.tv_nsec = (long)(ns % 1000000000ull);
    nanosleep(&ts, NULL);
}

/* Sleep while *addr == expected, at most timeout_ns (0 = no wait at all).
 * Returns 0 when woken or the value changed, ETIMEDOUT or EINTR otherwise.
 * Spurious wake-ups are allowed: callers re-check their condition. */
static inline int ctas7_futex_wait(uint32_t *addr, uint32_t expected, uint64_t timeout_ns) {
#if CTAS7_HAVE_FUTEX
    struct timespec ts;
    ts.tv_sec = (time_t)(timeout_ns / 1000000000ull);
    ts.tv_nsec = (long)(timeout_ns % 1000000000ull);
    long rc = syscall(SYS_futex, addr, FUTEX_WAIT, expected, &ts, NULL, 0);
    if (rc == 0) return 0;
    if (errno == EAGAIN) return 0;
    return errno;
#else
    (void)addr; (void)expected;
    ctas7_sleep_ns(timeout_ns < 50000 ? timeout_ns : 50000);
    return 0;
#endif
}

static inline void ctas7_futex_wake(uint32_t *addr, int n) {
#if CTAS7_HAVE_FUTEX
    syscall(SYS_futex, addr, FUTEX_WAKE, n, NULL, NULL, 0);
#else
    (void)addr; (void)n;
#endif
}

#endif /* CTAS7_ATOMICS_H */
