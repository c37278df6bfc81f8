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
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

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

// A fresh P-256 key and a certificate for it, signed by itself, valid for a year, named
// `common_name` (subject and subjectAltName DNS), set on `ctx`. Returns 1 on success.
static inline int sluice_ssl_ctx_use_self_signed(SSL_CTX *ctx, const char *common_name) {
    int ok = 0;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    X509_EXTENSION *san = NULL;
    char san_value[300];
    EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!kctx || EVP_PKEY_keygen_init(kctx) <= 0 || EVP_PKEY_CTX_set_group_name(kctx, "P-256") <= 0
        || EVP_PKEY_generate(kctx, &key) <= 0) goto done;
    cert = X509_new();
    if (!cert || !X509_set_version(cert, 2)) goto done;
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 365L * 86400);
    X509_set_pubkey(cert, key);
    X509_NAME *name = X509_get_subject_name(cert);
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)common_name, -1, -1, 0)) goto done;
    X509_set_issuer_name(cert, name);
    snprintf(san_value, sizeof san_value, "DNS:%s", common_name);
    san = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san_value);
    if (!san || !X509_add_ext(cert, san, -1)) goto done;
    if (!X509_sign(cert, key, EVP_sha256())) goto done;
    ok = SSL_CTX_use_certificate(ctx, cert) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1;
done:
    X509_EXTENSION_free(san);
    X509_free(cert);
    EVP_PKEY_free(key);
    EVP_PKEY_CTX_free(kctx);
    return ok;
}

// The subject of a certificate in RFC 2253 form ("CN=client,O=Example") into `out`
// (NUL-terminated, cut at `size`); its length, or -1 without a certificate.
// XN_FLAG_RFC2253 is a macro of macros, which Swift does not import.
static inline int sluice_x509_subject(const X509 *certificate, char *out, int size) {
    BIO *bio = certificate ? BIO_new(BIO_s_mem()) : NULL;
    int length = -1;
    if (bio && X509_NAME_print_ex(bio, X509_get_subject_name(certificate), 0, XN_FLAG_RFC2253) >= 0) {
        length = BIO_read(bio, out, size - 1);
        if (length < 0) length = 0;
        out[length] = 0;
    }
    BIO_free(bio);
    return length;
}

// A SHA-256 over `label` and the certificates in the context's trust store, in the store's
// order, into `out` (32 bytes): which anchors a client verified a session's server against.
// The stack accessors are macros Swift does not import.
static inline int sluice_ssl_ctx_trust_digest(SSL_CTX *ctx, const char *label, unsigned char *out) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) return 0;
    int ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) && EVP_DigestUpdate(md, label, strlen(label));
    STACK_OF(X509_OBJECT) *objects = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
    for (int i = 0; ok && i < sk_X509_OBJECT_num(objects); i++) {
        X509 *cert = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objects, i));
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int length = 0;
        if (cert) ok = X509_digest(cert, EVP_sha256(), digest, &length) && EVP_DigestUpdate(md, digest, length);
    }
    unsigned int length = 0;
    ok = ok && EVP_DigestFinal_ex(md, out, &length) && length == 32;
    EVP_MD_CTX_free(md);
    return ok;
}

// Verification as OpenSSL does it, and two rules more for the peer's own certificate: with a
// key usage extension, it must allow digital signatures (RFC 8446 4.4.2.2, RFC 5280 4.2.1.3);
// and a host name is not matched to its CN when it names a URI or SRV identity.
// Every handshake Sluice offers is signed (TLS 1.3, ECDHE in TLS 1.2), while OpenSSL's SSL
// purpose also takes key agreement or key encipherment alone; GnuTLS refuses those too.
static inline int sluice_verify_peer_rules(int ok, X509_STORE_CTX *store) {
    if (!ok || X509_STORE_CTX_get_error_depth(store) != 0) return ok;
    X509 *leaf = X509_STORE_CTX_get_current_cert(store);
    if (!leaf) return ok;
    if ((X509_get_extension_flags(leaf) & EXFLAG_KUSAGE) && !(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE)) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_KEYUSAGE_NO_DIGITAL_SIGNATURE);
        return 0;
    }
    // A host name matched through the subject's CN counts only when the certificate names no
    // URI or SRV identity (RFC 6125 6.4.4); OpenSSL looks only for DNS names before it falls back.
    const char *host = X509_VERIFY_PARAM_get0_host(X509_STORE_CTX_get0_param(store), 0);
    GENERAL_NAMES *names = host ? X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL) : NULL;
    int otherIdentity = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        if (name->type == GEN_URI || (name->type == GEN_OTHERNAME && OBJ_obj2nid(name->d.otherName->type_id) == NID_SRVName)) otherIdentity = 1;
    }
    GENERAL_NAMES_free(names);
    if (otherIdentity && X509_check_host(leaf, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, NULL) != 1) {
        X509_STORE_CTX_set_error(store, X509_V_ERR_HOSTNAME_MISMATCH);
        return 0;
    }
    return ok;
}

// The SSL a verification runs for (SSL_get_ex_data_X509_STORE_CTX_idx is not a constant Swift sees).
static inline SSL *sluice_store_ssl(X509_STORE_CTX *store) {
    return X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
}

// The info callback's "an alert was written" (SSL_CB_ALERT | SSL_CB_WRITE, a macro of macros).
static const int SLUICE_SSL_CB_WRITE_ALERT = SSL_CB_WRITE_ALERT;

// SSL_OP_* are built with SSL_OP_BIT(), a function-like macro.
static const uint64_t SLUICE_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t SLUICE_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t SLUICE_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const uint64_t SLUICE_SSL_OP_PRIORITIZE_CHACHA = SSL_OP_PRIORITIZE_CHACHA;
static const uint64_t SLUICE_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET;

// The kTLS uapi (linux/tls.h, netinet/tcp.h): option levels and names.
static const int SLUICE_SOL_TLS = 282;
static const int SLUICE_TCP_ULP = 31;
static const int SLUICE_TLS_TX = TLS_TX;
static const int SLUICE_TLS_RX = TLS_RX;
static const int SLUICE_TLS_GET_RECORD_TYPE = TLS_GET_RECORD_TYPE;
static const int SLUICE_TLS_SET_RECORD_TYPE = TLS_SET_RECORD_TYPE;

#endif
