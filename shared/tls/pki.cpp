// SPDX-License-Identifier: Apache-2.0
#include "shared/tls/pki.hpp"
#include "shared/tls/x509_subject.hpp"

#include <arpa/inet.h>
#include <memory>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace kflex::tls {
namespace {

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PKey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

std::string opensslError(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
  }
  ERR_clear_error();
  return what + ": " + buf;
}

std::string bioString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, size_t(len));
}

Result<X509Ptr> parseCert(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return fail(opensslError("cannot parse certificate"));
  }
  return cert;
}

Result<PKey> parseKey(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
  PKey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return fail(opensslError("cannot parse private key"));
  }
  return key;
}

Result<PKey> newKey() {
  PKey key(EVP_EC_gen("P-256"));
  if (!key) {
    return fail(opensslError("cannot generate an ECDSA P-256 key"));
  }
  return key;
}

bool addExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    return false;
  }
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1;
}

// Issues a certificate for `subject_key` (a new key when null; its PEM is returned then).
Result<KeyPair> build(const CertRequest& req, const Clock& clock, X509* issuer, EVP_PKEY* issuer_key,
                      EVP_PKEY* subject_key = nullptr) {
  PKey own;
  if (subject_key == nullptr) {
    auto fresh = newKey();
    if (!fresh) {
      return fresh.error();
    }
    own = std::move(fresh.value());
    subject_key = own.get();
  }
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  // 128-bit random serial, positive.
  unsigned char serial_bytes[16];
  RAND_bytes(serial_bytes, sizeof serial_bytes);
  serial_bytes[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);

  auto now = std::chrono::system_clock::to_time_t(clock.now());
  auto lifetime = std::chrono::duration_cast<std::chrono::seconds>(req.validity).count();
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), now - std::min<long>(300, lifetime / 10));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                now + std::chrono::duration_cast<std::chrono::seconds>(req.validity).count());
  X509_set_pubkey(cert.get(), subject_key);

  X509_NAME* name = X509_get_subject_name(cert.get());
  for (const auto& o : req.organizations) {
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(o.c_str()), -1, -1, 0);
  }
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(req.common_name.c_str()), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));

  bool ok = true;
  if (req.is_ca) {
    ok = ok && addExt(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    ok = ok && addExt(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature");
  } else {
    ok = ok && addExt(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    ok = ok && addExt(cert.get(), signer, NID_key_usage, "critical,digitalSignature");
    std::string eku;
    if (req.server_auth) {
      eku = "serverAuth";
    }
    if (req.client_auth) {
      eku += eku.empty() ? "clientAuth" : ",clientAuth";
    }
    if (!eku.empty()) {
      ok = ok && addExt(cert.get(), signer, NID_ext_key_usage, eku);
    }
  }
  ok = ok && addExt(cert.get(), signer, NID_subject_key_identifier, "hash");
  if (issuer != nullptr) {
    ok = ok && addExt(cert.get(), signer, NID_authority_key_identifier, "keyid:always");
  }
  std::string san;
  for (const auto& d : req.dns_names) {
    san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  }
  for (const auto& ip : req.ip_addresses) {
    san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  }
  if (!san.empty()) {
    ok = ok && addExt(cert.get(), signer, NID_subject_alt_name, san);
  }
  if (!ok) {
    return fail(opensslError("cannot add certificate extensions"));
  }
  EVP_PKEY* sign_key = issuer_key != nullptr ? issuer_key : subject_key;
  if (X509_sign(cert.get(), sign_key, EVP_sha256()) == 0) {
    return fail(opensslError("cannot sign certificate"));
  }

  Bio cbio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(cbio.get(), cert.get());
  KeyPair out{bioString(cbio.get()), ""};
  if (own) {
    Bio kbio(BIO_new(BIO_s_mem()));
    PEM_write_bio_PrivateKey(kbio.get(), own.get(), nullptr, nullptr, 0, nullptr, nullptr);
    out.key_pem = bioString(kbio.get());
  }
  return out;
}

std::string hex(const unsigned char* data, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out += kHex[data[i] >> 4];
    out += kHex[data[i] & 15];
  }
  return out;
}

Result<std::string> pinOf(EVP_PKEY* pub) {
  std::string pin = publicKeyPin(pub);
  if (pin.empty()) {
    return fail(opensslError("cannot encode public key"));
  }
  return pin;
}

using Req = std::unique_ptr<X509_REQ, Deleter<X509_REQ, X509_REQ_free>>;

Result<Req> parseCsr(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), int(pem.size())));
  Req req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) {
    return fail(opensslError("cannot parse the certificate signing request"));
  }
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req.get());
  if (pub == nullptr || X509_REQ_verify(req.get(), pub) != 1) {
    return fail(opensslError("the certificate signing request's signature does not verify"));
  }
  if (EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC && EVP_PKEY_get_base_id(pub) != EVP_PKEY_ED25519 &&
      !(EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA && EVP_PKEY_get_bits(pub) >= 2048)) {
    return fail("the certificate signing request's key must be ECDSA, Ed25519 or RSA of at least 2048 bits");
  }
  return req;
}

TimePoint asn1ToTime(const ASN1_TIME* t) {
  std::tm tm{};
  ASN1_TIME_to_tm(t, &tm);
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace

void readSubject(X509* cert, std::string& common_name, std::vector<std::string>& organizations) {
  X509_NAME* name = X509_get_subject_name(cert);
  for (int i = 0; i < X509_NAME_entry_count(name); ++i) {
    X509_NAME_ENTRY* e = X509_NAME_get_entry(name, i);
    int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(e));
    if (len < 0) {
      continue;
    }
    std::string v(reinterpret_cast<char*>(utf8), size_t(len));
    OPENSSL_free(utf8);
    if (nid == NID_commonName) {
      common_name = v;
    } else if (nid == NID_organizationName) {
      organizations.push_back(v);
    }
  }
}

std::string publicKeyPin(EVP_PKEY* pub) {
  unsigned char* der = nullptr;
  int len = pub != nullptr ? i2d_PUBKEY(pub, &der) : 0;
  if (len <= 0) {
    return "";
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, size_t(len), digest);
  OPENSSL_free(der);
  return "sha256:" + hex(digest, sizeof digest);
}

Result<KeyPair> createCa(const CertRequest& req, const Clock& clock) {
  CertRequest ca = req;
  ca.is_ca = true;
  return build(ca, clock, nullptr, nullptr);
}

Result<KeyPair> issueCertificate(const KeyPair& ca, const CertRequest& req, const Clock& clock) {
  auto ca_cert = parseCert(ca.cert_pem);
  if (!ca_cert) {
    return ca_cert.error();
  }
  auto ca_key = parseKey(ca.key_pem);
  if (!ca_key) {
    return ca_key.error();
  }
  return build(req, clock, ca_cert.value().get(), ca_key.value().get());
}

Result<std::string> crossSign(const KeyPair& subject_ca, const KeyPair& issuer_ca, std::chrono::seconds validity,
                              const Clock& clock) {
  auto subject = parseCert(subject_ca.cert_pem);
  auto issuer = parseCert(issuer_ca.cert_pem);
  auto issuer_key = parseKey(issuer_ca.key_pem);
  if (!subject || !issuer || !issuer_key) {
    return fail("cannot cross-sign: a CA certificate or key does not parse");
  }
  CertRequest req;
  std::vector<std::string> orgs;
  readSubject(subject.value().get(), req.common_name, orgs);
  req.is_ca = true;
  req.validity = validity;
  auto out = build(req, clock, issuer.value().get(), issuer_key.value().get(), X509_get0_pubkey(subject.value().get()));
  if (!out) {
    return out.error();
  }
  return out.value().cert_pem;
}

Result<CertInfo> inspectCertificate(const std::string& cert_pem) {
  auto cert = parseCert(cert_pem);
  if (!cert) {
    return cert.error();
  }
  CertInfo info;
  readSubject(cert.value().get(), info.common_name, info.organizations);
  auto* sans = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.value().get(), NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type == GEN_DNS) {
        info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(gn->d.dNSName)),
                                    size_t(ASN1_STRING_length(gn->d.dNSName)));
      } else if (gn->type == GEN_IPADD) {
        char buf[INET6_ADDRSTRLEN] = {};
        int len = ASN1_STRING_length(gn->d.iPAddress);
        const unsigned char* data = ASN1_STRING_get0_data(gn->d.iPAddress);
        if (len == 4) {
          inet_ntop(AF_INET, data, buf, sizeof buf);
        } else if (len == 16) {
          inet_ntop(AF_INET6, data, buf, sizeof buf);
        }
        info.ip_addresses.emplace_back(buf);
      }
    }
    GENERAL_NAMES_free(sans);
  }
  info.not_before = asn1ToTime(X509_get0_notBefore(cert.value().get()));
  info.not_after = asn1ToTime(X509_get0_notAfter(cert.value().get()));
  return info;
}

bool signedBy(const std::string& cert_pem, const std::string& ca_pem) {
  auto cert = parseCert(cert_pem);
  auto ca = parseCert(ca_pem);
  if (!cert || !ca) {
    return false;
  }
  EVP_PKEY* pub = X509_get0_pubkey(ca.value().get());
  bool ok = pub != nullptr && X509_verify(cert.value().get(), pub) == 1;
  ERR_clear_error();
  return ok;
}

Result<void> checkKeyMatches(const std::string& cert_pem, const std::string& key_pem) {
  auto cert = parseCert(cert_pem);
  if (!cert) {
    return cert.error();
  }
  auto key = parseKey(key_pem);
  if (!key) {
    return key.error();
  }
  if (X509_check_private_key(cert.value().get(), key.value().get()) != 1) {
    ERR_clear_error();
    return fail("the private key does not belong to the certificate");
  }
  return {};
}

Result<std::string> spkiPin(const std::string& cert_pem) {
  auto cert = parseCert(cert_pem);
  if (!cert) {
    return cert.error();
  }
  return pinOf(X509_get0_pubkey(cert.value().get()));
}

Result<std::string> createPrivateKey() {
  auto key = newKey();
  if (!key) {
    return key.error();
  }
  Bio kbio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(kbio.get(), key.value().get(), nullptr, nullptr, 0, nullptr, nullptr);
  return bioString(kbio.get());
}

Result<std::string> createCsr(const std::string& key_pem, const std::string& common_name) {
  auto key = parseKey(key_pem);
  if (!key) {
    return key.error();
  }
  Req req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                             -1, -1, 0);
  X509_REQ_set_pubkey(req.get(), key.value().get());
  if (X509_REQ_sign(req.get(), key.value().get(), EVP_sha256()) == 0) {
    return fail(opensslError("cannot sign the certificate signing request"));
  }
  Bio bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  return bioString(bio.get());
}

Result<CsrInfo> inspectCsr(const std::string& csr_pem) {
  auto req = parseCsr(csr_pem);
  if (!req) {
    return req.error();
  }
  CsrInfo info;
  X509_NAME* name = X509_REQ_get_subject_name(req.value().get());
  int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (idx >= 0) {
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx)));
    if (len >= 0) {
      info.common_name.assign(reinterpret_cast<char*>(utf8), size_t(len));
      OPENSSL_free(utf8);
    }
  }
  auto pin = pinOf(X509_REQ_get0_pubkey(req.value().get()));
  if (!pin) {
    return pin.error();
  }
  info.public_key_pin = pin.value();
  return info;
}

Result<std::string> signCsr(const KeyPair& ca, const std::string& csr_pem, const CertRequest& req, const Clock& clock) {
  auto csr = parseCsr(csr_pem);
  if (!csr) {
    return csr.error();
  }
  auto ca_cert = parseCert(ca.cert_pem);
  if (!ca_cert) {
    return ca_cert.error();
  }
  auto ca_key = parseKey(ca.key_pem);
  if (!ca_key) {
    return ca_key.error();
  }
  // The subject and extensions come from `req` (the hub decides them), only the key from the CSR.
  auto out = build(req, clock, ca_cert.value().get(), ca_key.value().get(), X509_REQ_get0_pubkey(csr.value().get()));
  if (!out) {
    return out.error();
  }
  return out.value().cert_pem;
}

std::string randomAlnum(size_t n) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string out;
  unsigned char buf[64];
  while (out.size() < n) {
    if (RAND_bytes(buf, sizeof buf) != 1) {
      throw std::runtime_error("the system's random source failed");
    }
    for (unsigned char b : buf) {
      if (b < 252 && out.size() < n) {  // 252 = 7 * 36: keep the distribution uniform
        out += kChars[b % 36];
      }
    }
  }
  return out;
}

std::string sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return hex(digest, sizeof digest);
}

bool isIpAddress(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

Result<std::string> publicKeyPem(const std::string& key_pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> in(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())), BIO_free);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr),
                                                         EVP_PKEY_free);
  if (!key) {
    return fail("not a PEM private key");
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> out(BIO_new(BIO_s_mem()), BIO_free);
  if (PEM_write_bio_PUBKEY(out.get(), key.get()) != 1) {
    return fail("cannot write the public key");
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(out.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

}  // namespace kflex::tls
