// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "shared/common/result.hpp"

namespace kflex::tls {

/**
 * Encryption at rest for credentials the hub keeps (control planes' kubeconfigs): AES-256-GCM
 * with a random 96-bit nonce per value, under a 256-bit key kept in a file of its own (0600),
 * made on first use. Sealed text is "k1:" + base64(nonce | ciphertext | tag); tampering or the
 * wrong key fails to open. Thread safety: const members from any thread.
 */
class SecretBox {
 public:
  /// Reads the key file, or makes one (0600) when it does not exist.
  static Result<SecretBox> openOrCreate(const std::filesystem::path& key_file);
  /// Reads a key file someone made (base64 of 32 random bytes: `openssl rand -base64 32`); an
  /// error saying how to make one when there is none.
  static Result<SecretBox> openExisting(const std::filesystem::path& key_file);
  /// A box with this key (32 bytes), for tests.
  static Result<SecretBox> withKey(std::string key);
  /// Encrypts.
  Result<std::string> seal(std::string_view plaintext) const;
  /// Decrypts and authenticates.
  Result<std::string> open(std::string_view sealed) const;

 private:
  explicit SecretBox(std::string key) : key_(std::move(key)) {}
  std::string key_;
};

}  // namespace kflex::tls
