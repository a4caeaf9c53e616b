/*
 * Force-included into every C++ translation unit of the mediasoup worker build
 * (CXXFLAGS="-include .../sigstksz-compat.h", see infra/build-mediasoup.sh).
 *
 * glibc >= 2.34 defines SIGSTKSZ as sysconf(_SC_SIGSTKSZ) (not a constant) when
 * _GNU_SOURCE is set, which the worker build does. The abseil-cpp bundled with
 * mediasoup 3.8.4 uses it in `std::max(SIGSTKSZ, 65536)`
 * (absl/debugging/failure_signal_handler.cc), which then fails to compile
 * (long vs int, not constexpr). Include <signal.h> first, so its include guard
 * is set, then pin SIGSTKSZ to the classic constant value.
 */
#ifndef SEALED_MEET_SIGSTKSZ_COMPAT_H
#define SEALED_MEET_SIGSTKSZ_COMPAT_H
#include <signal.h>
#undef SIGSTKSZ
#define SIGSTKSZ 16384
#endif
