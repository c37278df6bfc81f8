// CSluiceOpenSSL: OpenSSL 3 (libssl, libcrypto) for the TLS stage, and the uapi of kTLS.
#ifndef CSLUICE_OPENSSL_H
#define CSLUICE_OPENSSL_H

#include <linux/tls.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>

// OpenSSL's setters below are macros over SSL_CTX_ctrl/SSL_ctrl/BIO_ctrl, which Swift does not
// import; these are the same calls as functions.
static inline int sluice_ssl_ctx_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}
static inline int sluice_ssl_ctx_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}
static inline long sluice_ssl_ctx_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}
static inline int sluice_ssl_set_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}
static inline int sluice_ssl_set_app_data(SSL *ssl, void *data) { return SSL_set_ex_data(ssl, 0, data); }
static inline void *sluice_ssl_get_app_data(const SSL *ssl) { return SSL_get_ex_data(ssl, 0); }
static inline long sluice_bio_set_mem_eof_return(BIO *bio, int value) { return BIO_set_mem_eof_return(bio, value); }

// SSL_OP_* are built with SSL_OP_BIT(), a function-like macro.
static const uint64_t SLUICE_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t SLUICE_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t SLUICE_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const uint64_t SLUICE_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET;

// The kTLS uapi (linux/tls.h, netinet/tcp.h): option levels and names.
static const int SLUICE_SOL_TLS = 282;
static const int SLUICE_TCP_ULP = 31;
static const int SLUICE_TLS_TX = TLS_TX;
static const int SLUICE_TLS_RX = TLS_RX;
static const int SLUICE_TLS_GET_RECORD_TYPE = TLS_GET_RECORD_TYPE;
static const int SLUICE_TLS_SET_RECORD_TYPE = TLS_SET_RECORD_TYPE;

#endif
