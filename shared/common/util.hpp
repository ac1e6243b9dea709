// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>
#include <sys/types.h>

#include "shared/common/result.hpp"

namespace kflex {

/// Standard base64 (with padding).
std::string base64Encode(std::string_view data);
/// Decodes standard base64; ignores whitespace; error on anything else.
Result<std::string> base64Decode(std::string_view text);
/// A random RFC 4122 version-4 UUID from the OpenSSL CSPRNG.
std::string newUuid();
/// Reads a whole file.
Result<std::string> readFile(const std::filesystem::path& path);
/// Writes a file atomically (temp file, fsync, rename, fsync dir) with the given mode.
Result<void> writeFileAtomic(const std::filesystem::path& path, std::string_view data, mode_t mode);
/// True when s is a DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters.
bool isDns1123Label(std::string_view s);
/// True when s is a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
bool isDns1123Subdomain(std::string_view s);
/// The length of the longest prefix of `s` of at most `max` bytes that ends at a UTF-8
/// character boundary (for cutting text to a byte limit without splitting a character).
size_t utf8Prefix(std::string_view s, size_t max);
/// Splits on a separator, keeping empty parts.
std::vector<std::string> split(std::string_view s, char sep);
/// Strips ASCII whitespace at both ends.
std::string_view trim(std::string_view s);
/// Success when problems is empty, else one error listing every problem on its own line.
Result<void> reportProblems(const std::vector<std::string>& problems);
/// The host (IPv6 without its brackets) and port (443 when none) of an https:// URL; an error
/// for any other scheme, no host, or a malformed IPv6 address.
Result<void> splitHttpsUrl(const std::string& url, std::string& host, std::string& port);
/// `host:port`, an IPv6 host in brackets.
std::string joinHostPort(const std::string& host, const std::string& port);
/// Names the calling thread as `top -H`, `ps -L` and perf show it (cut to the kernel's 15 bytes).
void setThreadName(std::string_view name);

}  // namespace kflex
