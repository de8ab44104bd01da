// The stages of reading a manifest, apart so each can be tested and fuzzed alone:
//   1. ParseDocuments: text -> YAML documents (yaml-cpp nodes carry their positions)
//   2. DecodeWorkload: one document -> WorkloadSpec + where each field was written
//   3. CheckWorkload (lib/spec/check.h): WorkloadSpec -> first invalid field path
// ParseManifest (manifest.h) runs all three and maps a failing path back to a position.
#ifndef PETREL_LIB_MANIFEST_DECODE_H_
#define PETREL_LIB_MANIFEST_DECODE_H_

#include <yaml-cpp/yaml.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "petrel/spec.h"

namespace petrel::internal {

// A place in a manifest, 1-based.
struct Position {
  int line = 1;
  int column = 1;
};

// Field path ("spec.ports[0].containerPort", "" for the document) -> where its value
// is written; for a field written without a value (`image:`), where its key is.
using PositionMap = std::map<std::string, Position>;

// One manifest error; `path` is "" when no field is to blame (YAML syntax).
struct ManifestError {
  Position pos;
  std::string path;
  std::string reason;
};

// Splits `text` into workload documents: every non-empty YAML document, every
// element of a document that is a sequence, and every item of a `kind: List`.
// Hostile input gets an error, not a crash or a hang: collections nested deeper than
// 64 levels (kMaxJsonDepth) and input that would make yaml-cpp 0.7 loop forever are
// refused before it is loaded.
// REQUIRES: docs is empty. Never throws.
std::optional<ManifestError> ParseDocuments(std::string_view text, std::vector<YAML::Node>* docs);

// Decodes one document (apiVersion petrel.dev/v1, kind Workload) into *spec and
// records the position of every field present in *positions. Catches unknown and
// duplicate keys, wrong types, and values that do not parse (quantities, durations,
// enums); does not check ranges or names, which is CheckWorkload's job.
// Never throws.
std::optional<ManifestError> DecodeWorkload(const YAML::Node& doc, WorkloadSpec* spec,
                                            PositionMap* positions);

// The position of `path`, or of its nearest ancestor present in `positions`.
Position Locate(const PositionMap& positions, std::string path);

}  // namespace petrel::internal

#endif  // PETREL_LIB_MANIFEST_DECODE_H_
