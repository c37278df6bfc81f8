// CSluiceOpenSSL: OpenSSL 3 (libssl, libcrypto) for the TLS stage, and the uapi of kTLS.
#ifndef CSLUICE_OPENSSL_H
#define CSLUICE_OPENSSL_H

#include <linux/tls.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#endif
