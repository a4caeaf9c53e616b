# Replacement for mediasoup 3.8.4's worker/deps/openssl/openssl.gyp, copied over it
# by infra/build-mediasoup.sh in a scratch copy of the worker sources.
#
# The original target compiles the bundled OpenSSL 1.1.1k (end of life since
# September 2023, no more security fixes) into a static libopenssl.a. This one
# compiles nothing: every target that depends on 'openssl' (the worker itself,
# libwebrtc, libsrtp, usrsctp) gets Debian's maintained OpenSSL 3 headers and
# links -lssl -lcrypto dynamically, so security updates arrive through apt.
{
  'variables': {
    # Passed by infra/build-mediasoup.sh from `pkg-config --variable=includedir openssl`.
    'openssl_include_dir%': '/usr/include',
  },
  'targets': [
    {
      'target_name': 'openssl',
      'type': 'none',
      'all_dependent_settings': {
        'include_dirs': [ '<(openssl_include_dir)' ],
        # The worker uses APIs (HMAC_CTX, ...) deprecated in 3.0 but still present;
        # declare the 1.1.1 API level so OpenSSL 3 headers do not warn on each use.
        'defines': [ 'OPENSSL_API_COMPAT=10101' ],
      },
      'link_settings': {
        'libraries': [ '-lssl', '-lcrypto' ],
      },
    },
  ],
}
