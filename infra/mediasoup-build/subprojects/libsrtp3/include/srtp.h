/*
 * srtp.h — the libsrtp 3 API that the mediasoup 3.27 worker uses, on Debian's libsrtp2 (2.5).
 *
 * SECURITY-RELEVANT. Every SRTP/SRTCP packet the SFU sends or receives passes through this glue.
 * It exists because the worker is written against libsrtp 3 (a versatica fork, in no Debian
 * release), while Debian ships and security-maintains libsrtp2. Keep it minimal:
 *
 *   - Only what the worker calls (worker/src/RTC/SrtpSession.cpp, include/RTC/SrtpSession.hpp,
 *     src/DepLibSRTP.cpp). Everything else is libsrtp2's own declarations, unchanged.
 *   - No cryptography here: keys, key derivation, ciphers, tags and replay checks are libsrtp2's.
 *     This file only declares; the implementation is ../srtp3-on-srtp2.cpp (copy/length checks,
 *     policy bookkeeping).
 *   - Only the four AES suites mediasoup negotiates (AES_CM_128_HMAC_SHA1_80/_32,
 *     AEAD_AES_128_GCM, AEAD_AES_256_GCM). NULL-cipher profiles, MKI and multiple master keys are
 *     refused with srtp_err_status_bad_param (the worker uses none of them).
 *
 * Tested end to end by test/server/srtp-suites.test.ts (RTP through two SRTP PlainTransports per
 * suite, and a wrong key failing) and by the browser calls (DTLS-SRTP).
 */
#ifndef SEALED_MEET_SRTP3_ON_SRTP2_H
#define SEALED_MEET_SRTP3_ON_SRTP2_H

#ifndef __cplusplus
#error "this libsrtp 3 compatibility header is C++ only (the mediasoup worker is C++)"
#endif

// libsrtp2 names its policy *struct* srtp_policy_t; libsrtp 3 uses that name for an opaque handle.
// Rename the v2 struct while its header is read (C symbols carry no types, so linking is unaffected).
#define srtp_policy_t srtp2_policy_t
#include <srtp2/srtp.h>
#undef srtp_policy_t

#include <cstddef>
#include <cstdint>

// Status codes that only libsrtp 3 has (same values as libsrtp 3.0; libsrtp2 stops at 27).
// libsrtp2 never returns them; the glue returns buffer_small for an output buffer that is too small.
inline constexpr srtp_err_status_t srtp_err_status_buffer_small = static_cast<srtp_err_status_t>(28);
inline constexpr srtp_err_status_t srtp_err_status_cryptex_err  = static_cast<srtp_err_status_t>(29);

// libsrtp 3's opaque policy handle.
struct srtp_policy_ctx_t_;
typedef srtp_policy_ctx_t_* srtp_policy_t;

srtp_err_status_t srtp_policy_create(srtp_policy_t* policy);
/** Wipes the key material held by the policy and frees it. NULL is ignored. */
void srtp_policy_destroy(srtp_policy_t policy);
srtp_err_status_t srtp_policy_set_ssrc(srtp_policy_t policy, srtp_ssrc_t ssrc);
/** One of the four AES suites; must be called before srtp_policy_add_key(). */
srtp_err_status_t srtp_policy_set_profile(srtp_policy_t policy, srtp_profile_t profile);
/** Exactly one master key and salt of the profile's lengths; no MKI. */
srtp_err_status_t srtp_policy_add_key(
  srtp_policy_t policy,
  const uint8_t* key,
  size_t key_len,
  const uint8_t* salt,
  size_t salt_len,
  const uint8_t* mki,
  size_t mki_len);
srtp_err_status_t srtp_policy_set_allow_repeat_tx(srtp_policy_t policy, bool allow);
/** 0 (libsrtp's default, 128) or 64..32767, as in libsrtp 3. */
srtp_err_status_t srtp_policy_set_window_size(srtp_policy_t policy, size_t window_size);

// The following overload libsrtp2's functions of the same name (different parameter lists), so
// calls written for libsrtp 3 resolve here, and these call libsrtp2.

/** Requires a policy with SSRC type, profile and key set. libsrtp2 derives the session keys from it;
 * the policy (and its copy of the master key) may be destroyed right after. */
srtp_err_status_t srtp_create(srtp_t* session, const srtp_policy_t policy);

/** Out-of-place (or in-place) protect: `*srtp_len` is the output capacity on entry, which must be at
 * least rtp_len + SRTP_MAX_TRAILER_LEN (libsrtp2 writes the trailer in place), and the packet
 * length on success. `rtp` is never modified when `srtp` differs from it. mki_index must be 0. */
srtp_err_status_t srtp_protect(
  srtp_t ctx, const uint8_t* rtp, size_t rtp_len, uint8_t* srtp, size_t* srtp_len, size_t mki_index);
/** `*rtp_len` is the output capacity on entry (at least srtp_len) and the RTP length on success. */
srtp_err_status_t srtp_unprotect(
  srtp_t ctx, const uint8_t* srtp, size_t srtp_len, uint8_t* rtp, size_t* rtp_len);
/** As srtp_protect(); the capacity must be at least rtcp_len + SRTP_MAX_TRAILER_LEN + 4 (index). */
srtp_err_status_t srtp_protect_rtcp(
  srtp_t ctx, const uint8_t* rtcp, size_t rtcp_len, uint8_t* srtcp, size_t* srtcp_len, size_t mki_index);
srtp_err_status_t srtp_unprotect_rtcp(
  srtp_t ctx, const uint8_t* srtcp, size_t srtcp_len, uint8_t* rtcp, size_t* rtcp_len);

/** libsrtp2's srtp_remove_stream(). The SSRC is passed through unchanged: mediasoup calls this with
 * htonl(ssrc), which is the network byte order libsrtp2 expects. */
srtp_err_status_t srtp_stream_remove(srtp_t session, uint32_t ssrc);

#endif
