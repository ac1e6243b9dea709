// SPDX-License-Identifier: Apache-2.0
#include "shared/tls/secret_box.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <memory>

#include "shared/common/util.hpp"

namespace kflex::tls {
namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr std::string_view kPrefix = "k1:";

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

}  // namespace

Result<SecretBox> SecretBox::openOrCreate(const std::filesystem::path& key_file) {
  if (auto text = readFile(key_file); text) {
    auto key = base64Decode(std::string(trim(text.value())));
    if (!key || key->size() != kKeyBytes) {
      return fail(key_file.string() + " does not hold a 256-bit key (base64); restore it from a backup — without it "
                  "the stored kubeconfigs cannot be read");
    }
    return SecretBox(key.value());
  }
  std::string key(kKeyBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    return fail("no randomness for an encryption key");
  }
  if (auto r = writeFileAtomic(key_file, base64Encode(key) + "\n", 0600); !r) {
    return fail("cannot write " + key_file.string() + ": " + r.error().message);
  }
  return SecretBox(std::move(key));
}

Result<SecretBox> SecretBox::openExisting(const std::filesystem::path& key_file) {
  auto text = readFile(key_file);
  if (!text) {
    return fail(key_file.string() + " cannot be read (" + text.error().message +
                "); make a key once with `openssl rand -base64 32 > FILE && chmod 600 FILE` and give every hub "
                "replica the same file");
  }
  auto key = base64Decode(std::string(trim(text.value())));
  if (!key || key->size() != kKeyBytes) {
    return fail(key_file.string() + " does not hold a 256-bit key in base64 (make one with `openssl rand -base64 32`)");
  }
  return SecretBox(key.value());
}

Result<SecretBox> SecretBox::withKey(std::string key) {
  if (key.size() != kKeyBytes) {
    return fail("an encryption key has 32 bytes");
  }
  return SecretBox(std::move(key));
}

Result<std::string> SecretBox::seal(std::string_view plaintext) const {
  std::string out(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  auto* bytes = reinterpret_cast<unsigned char*>(out.data());
  if (RAND_bytes(bytes, kNonceBytes) != 1) {
    return fail("no randomness for a nonce");
  }
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int len = 0;
  bool ok = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                                      reinterpret_cast<const unsigned char*>(key_.data()), bytes) == 1 &&
            EVP_EncryptUpdate(ctx.get(), bytes + kNonceBytes, &len,
                              reinterpret_cast<const unsigned char*>(plaintext.data()),
                              static_cast<int>(plaintext.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.get(), bytes + kNonceBytes + len, &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes,
                                bytes + kNonceBytes + plaintext.size()) == 1;
  if (!ok) {
    return fail("encryption failed");
  }
  return std::string(kPrefix) + base64Encode(out);
}

Result<std::string> SecretBox::open(std::string_view sealed) const {
  if (sealed.substr(0, kPrefix.size()) != kPrefix) {
    return fail("not a sealed value");
  }
  auto raw = base64Decode(sealed.substr(kPrefix.size()));
  if (!raw || raw->size() < kNonceBytes + kTagBytes) {
    return fail("a sealed value is damaged");
  }
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw->data());
  size_t n = raw->size() - kNonceBytes - kTagBytes;
  std::string out(n, '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int len = 0;
  std::string tag = raw->substr(kNonceBytes + n);
  bool ok = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                                      reinterpret_cast<const unsigned char*>(key_.data()), bytes) == 1 &&
            EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, bytes + kNonceBytes,
                              static_cast<int>(n)) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) == 1;
  if (!ok) {
    return fail("a sealed value does not open with this key (damaged, or another hub's key)");
  }
  return out;
}

}  // namespace kflex::tls
