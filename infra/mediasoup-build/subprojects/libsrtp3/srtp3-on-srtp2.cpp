/*
 * srtp3-on-srtp2.cpp — implementation of include/srtp.h (read its header comment first).
 *
 * SECURITY-RELEVANT glue, no cryptography: policy bookkeeping, length checks, and copies between
 * libsrtp 3's out-of-place calling convention and libsrtp2's in-place one. Every function checks
 * its arguments first and changes nothing when they are wrong.
 */
#include "srtp.h"

#include <climits>
#include <cstring> // std::memcpy(), std::memmove()
#include <new>
#include <string.h> // explicit_bzero() (glibc)

struct srtp_policy_ctx_t_
{
	/** The libsrtp2 policy handed to srtp_create(). Value-initialised: next, keys, deprecated_ekt and
	 * enc_xtn_hdr are NULL, num_master_keys is 0 (single key through `key`). */
	srtp2_policy_t v2{};
	srtp_profile_t profile{ srtp_profile_reserved };
	bool hasSsrc{ false };
	bool hasKey{ false };
	/** Master key || master salt: libsrtp2 reads exactly rtp.cipher_key_len bytes from v2.key. */
	uint8_t key[SRTP_MAX_KEY_LEN]{};
};

namespace
{
	bool IsAesSuite(srtp_profile_t profile)
	{
		switch (profile)
		{
			case srtp_profile_aes128_cm_sha1_80:
			case srtp_profile_aes128_cm_sha1_32:
			case srtp_profile_aead_aes_128_gcm:
			case srtp_profile_aead_aes_256_gcm:
				return true;
			default:
				return false; // includes the NULL-cipher profiles: never
		}
	}

	/** Copies `in` to `out` (when they differ) and runs libsrtp2's in-place function on `out`. */
	template<typename InPlace>
	srtp_err_status_t RunInPlace(
	  InPlace inPlace, const uint8_t* in, size_t inLen, uint8_t* out, size_t* outLen, size_t headroom)
	{
		if (in == nullptr || out == nullptr || outLen == nullptr)
			return srtp_err_status_bad_param;
		if (inLen > static_cast<size_t>(INT_MAX) - headroom)
			return srtp_err_status_bad_param;
		if (*outLen < inLen + headroom)
			return srtp_err_status_buffer_small;

		if (out != in)
			std::memmove(out, in, inLen);

		int len = static_cast<int>(inLen);
		const srtp_err_status_t err = inPlace(out, &len);

		if (err != srtp_err_status_ok)
			return err;
		if (len < 0 || static_cast<size_t>(len) > *outLen)
			return srtp_err_status_fail;

		*outLen = static_cast<size_t>(len);

		return srtp_err_status_ok;
	}
} // namespace

srtp_err_status_t srtp_policy_create(srtp_policy_t* policy)
{
	if (policy == nullptr)
		return srtp_err_status_bad_param;

	*policy = new (std::nothrow) srtp_policy_ctx_t_();

	return *policy != nullptr ? srtp_err_status_ok : srtp_err_status_alloc_fail;
}

void srtp_policy_destroy(srtp_policy_t policy)
{
	if (policy == nullptr)
		return;

	explicit_bzero(policy->key, sizeof(policy->key));
	delete policy;
}

srtp_err_status_t srtp_policy_set_ssrc(srtp_policy_t policy, srtp_ssrc_t ssrc)
{
	if (policy == nullptr)
		return srtp_err_status_bad_param;
	if (ssrc.type != ssrc_specific && ssrc.type != ssrc_any_inbound && ssrc.type != ssrc_any_outbound)
		return srtp_err_status_bad_param;

	// Host byte order in both libsrtp 2 and 3 (libsrtp2 applies htonl() itself).
	policy->v2.ssrc = ssrc;
	policy->hasSsrc = true;

	return srtp_err_status_ok;
}

srtp_err_status_t srtp_policy_set_profile(srtp_policy_t policy, srtp_profile_t profile)
{
	if (policy == nullptr || !IsAesSuite(profile))
		return srtp_err_status_bad_param;
	// The key was checked against the lengths of the profile in force when it was added.
	if (policy->hasKey)
		return srtp_err_status_bad_param;

	srtp_crypto_policy_t rtp{};
	srtp_crypto_policy_t rtcp{};
	srtp_err_status_t err = srtp_crypto_policy_set_from_profile_for_rtp(&rtp, profile);

	if (err != srtp_err_status_ok)
		return err;

	// For AES_CM_128_HMAC_SHA1_32 libsrtp2 keeps the 80-bit tag for SRTCP (RFC 3711 section 3.4).
	err = srtp_crypto_policy_set_from_profile_for_rtcp(&rtcp, profile);

	if (err != srtp_err_status_ok)
		return err;

	policy->v2.rtp  = rtp;
	policy->v2.rtcp = rtcp;
	policy->profile = profile;

	return srtp_err_status_ok;
}

srtp_err_status_t srtp_policy_add_key(
  srtp_policy_t policy,
  const uint8_t* key,
  size_t key_len,
  const uint8_t* salt,
  size_t salt_len,
  const uint8_t* mki,
  size_t mki_len)
{
	if (policy == nullptr || key == nullptr || salt == nullptr)
		return srtp_err_status_bad_param;
	// No MKI, one master key (libsrtp2 would need its srtp_master_key_t array for more).
	if (mki != nullptr || mki_len != 0 || policy->hasKey)
		return srtp_err_status_bad_param;
	if (!IsAesSuite(policy->profile))
		return srtp_err_status_bad_param;
	if (
	  key_len != srtp_profile_get_master_key_length(policy->profile) ||
	  salt_len != srtp_profile_get_master_salt_length(policy->profile))
	{
		return srtp_err_status_bad_param;
	}

	const size_t total = key_len + salt_len;

	// libsrtp2 reads cipher_key_len bytes (key + salt) from v2.key, for SRTP and for SRTCP.
	if (
	  total > sizeof(policy->key) || total != static_cast<size_t>(policy->v2.rtp.cipher_key_len) ||
	  total != static_cast<size_t>(policy->v2.rtcp.cipher_key_len))
	{
		return srtp_err_status_bad_param;
	}

	std::memcpy(policy->key, key, key_len);
	std::memcpy(policy->key + key_len, salt, salt_len);
	policy->v2.key = policy->key;
	policy->hasKey = true;

	return srtp_err_status_ok;
}

srtp_err_status_t srtp_policy_set_allow_repeat_tx(srtp_policy_t policy, bool allow)
{
	if (policy == nullptr)
		return srtp_err_status_bad_param;

	policy->v2.allow_repeat_tx = allow ? 1 : 0;

	return srtp_err_status_ok;
}

srtp_err_status_t srtp_policy_set_window_size(srtp_policy_t policy, size_t window_size)
{
	if (policy == nullptr)
		return srtp_err_status_bad_param;
	if (window_size != 0 && (window_size < 64 || window_size >= 0x8000))
		return srtp_err_status_bad_param;

	policy->v2.window_size = window_size;

	return srtp_err_status_ok;
}

srtp_err_status_t srtp_create(srtp_t* session, const srtp_policy_t policy)
{
	if (session == nullptr || policy == nullptr)
		return srtp_err_status_bad_param;
	if (!policy->hasSsrc || !policy->hasKey || !IsAesSuite(policy->profile))
		return srtp_err_status_bad_param;

	// libsrtp2's srtp_create(srtp_t*, const srtp2_policy_t*): derives the session keys, keeps no
	// pointer to the policy or its key.
	return srtp_create(session, static_cast<const srtp2_policy_t*>(&policy->v2));
}

srtp_err_status_t srtp_protect(
  srtp_t ctx, const uint8_t* rtp, size_t rtp_len, uint8_t* srtp, size_t* srtp_len, size_t mki_index)
{
	if (ctx == nullptr || mki_index != 0)
		return srtp_err_status_bad_param;

	return RunInPlace(
	  [ctx](uint8_t* buf, int* len) { return srtp_protect(ctx, buf, len); },
	  rtp,
	  rtp_len,
	  srtp,
	  srtp_len,
	  SRTP_MAX_TRAILER_LEN);
}

srtp_err_status_t srtp_unprotect(
  srtp_t ctx, const uint8_t* srtp, size_t srtp_len, uint8_t* rtp, size_t* rtp_len)
{
	if (ctx == nullptr)
		return srtp_err_status_bad_param;

	return RunInPlace(
	  [ctx](uint8_t* buf, int* len) { return srtp_unprotect(ctx, buf, len); },
	  srtp,
	  srtp_len,
	  rtp,
	  rtp_len,
	  0);
}

srtp_err_status_t srtp_protect_rtcp(
  srtp_t ctx, const uint8_t* rtcp, size_t rtcp_len, uint8_t* srtcp, size_t* srtcp_len, size_t mki_index)
{
	if (ctx == nullptr || mki_index != 0)
		return srtp_err_status_bad_param;

	// libsrtp2 appends the E flag + SRTCP index (4 octets) and the trailer in place.
	return RunInPlace(
	  [ctx](uint8_t* buf, int* len) { return srtp_protect_rtcp(ctx, buf, len); },
	  rtcp,
	  rtcp_len,
	  srtcp,
	  srtcp_len,
	  SRTP_MAX_TRAILER_LEN + 4);
}

srtp_err_status_t srtp_unprotect_rtcp(
  srtp_t ctx, const uint8_t* srtcp, size_t srtcp_len, uint8_t* rtcp, size_t* rtcp_len)
{
	if (ctx == nullptr)
		return srtp_err_status_bad_param;

	return RunInPlace(
	  [ctx](uint8_t* buf, int* len) { return srtp_unprotect_rtcp(ctx, buf, len); },
	  srtcp,
	  srtcp_len,
	  rtcp,
	  rtcp_len,
	  0);
}

srtp_err_status_t srtp_stream_remove(srtp_t session, uint32_t ssrc)
{
	if (session == nullptr)
		return srtp_err_status_bad_param;

	return srtp_remove_stream(session, ssrc);
}
