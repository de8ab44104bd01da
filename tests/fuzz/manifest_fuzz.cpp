// Fuzzes the manifest reader (YAML parse, decode, validate) and SpecFromJson with the
// same bytes, and checks the promises that tie them together:
//   - nothing crashes, throws, leaks or runs away on any input;
//   - an error is one line;
//   - every spec ParseManifest returns is valid and survives SpecToJson/SpecFromJson;
//   - every spec SpecFromJson accepts survives SpecToJson/SpecFromJson.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "petrel/manifest.h"
#include "petrel/spec.h"

namespace {

void Require(bool ok) {
  if (!ok) std::abort();
}

void RequireRoundTrip(const petrel::WorkloadSpec& spec) {
  petrel::Result<petrel::WorkloadSpec> back = petrel::SpecFromJson(petrel::SpecToJson(spec));
  Require(back.ok() && *back == spec);
  Require(petrel::TemplateHash(*back) == petrel::TemplateHash(spec));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);

  petrel::Result<std::vector<petrel::WorkloadSpec>> parsed = petrel::ParseManifest(text, "f.yaml");
  if (parsed.ok()) {
    for (const petrel::WorkloadSpec& spec : *parsed) {
      Require(petrel::ValidateWorkload(spec).ok());
      RequireRoundTrip(spec);
    }
  } else {
    Require(parsed.status().message().find('\n') == std::string::npos);
  }

  petrel::Result<petrel::WorkloadSpec> decoded = petrel::SpecFromJson(text);
  if (decoded.ok()) {
    petrel::Status valid = petrel::ValidateWorkload(*decoded);
    Require(valid.ok() || valid.message().find('\n') == std::string::npos);
    RequireRoundTrip(*decoded);
  }
  return 0;
}
