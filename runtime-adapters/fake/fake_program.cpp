// The fake's program language both ways: the words of steps, and steps from words.
#include "petrel/testing/fake_program.h"

#include <map>
#include <utility>

namespace petrel::testing {
namespace {

using Verb = Step::Verb;

// Each verb's word; the parser's table is made from it.
const std::map<Verb, std::string>& VerbWords() {
  static const std::map<Verb, std::string> kWords = {{Verb::kPrint, "print"},
                                                     {Verb::kPrintErr, "print-err"},
                                                     {Verb::kEnv, "env"},
                                                     {Verb::kCwd, "cwd"},
                                                     {Verb::kUid, "id"},
                                                     {Verb::kHostname, "hostname"},
                                                     {Verb::kCat, "cat"},
                                                     {Verb::kWrite, "write"},
                                                     {Verb::kCount, "count"},
                                                     {Verb::kAlloc, "alloc"},
                                                     {Verb::kTrapTerm, "trap-term"},
                                                     {Verb::kIgnoreTerm, "ignore-term"},
                                                     {Verb::kRun, "run"},
                                                     {Verb::kExit, "exit"},
                                                     {Verb::kSleep, "sleep"}};
  return kWords;
}

bool ParseNumber(const std::string& s, int64_t max, int64_t* out) {
  if (s.empty() || s.size() > 18) return false;
  int64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  if (n > max) return false;
  *out = n;
  return true;
}

}  // namespace

namespace steps {
Step Print(std::string text) { return {Verb::kPrint, "", std::move(text), 0}; }
Step PrintErr(std::string text) { return {Verb::kPrintErr, "", std::move(text), 0}; }
Step Env(std::string name) { return {Verb::kEnv, std::move(name), "", 0}; }
Step Cwd() { return {Verb::kCwd, "", "", 0}; }
Step Uid() { return {Verb::kUid, "", "", 0}; }
Step Hostname() { return {Verb::kHostname, "", "", 0}; }
Step Cat(std::string path) { return {Verb::kCat, std::move(path), "", 0}; }
Step Write(std::string path, std::string text) {
  return {Verb::kWrite, std::move(path), std::move(text), 0};
}
Step Count(int64_t lines) { return {Verb::kCount, "", "", lines}; }
Step Alloc(int64_t mib) { return {Verb::kAlloc, "", "", mib}; }
Step TrapTerm(int code, std::string text) { return {Verb::kTrapTerm, "", std::move(text), code}; }
Step IgnoreTerm() { return {Verb::kIgnoreTerm, "", "", 0}; }
Step Run() { return {Verb::kRun, "", "", 0}; }
Step Exit(int code) { return {Verb::kExit, "", "", code}; }
Step Sleep(int64_t ms) { return {Verb::kSleep, "", "", ms}; }
}  // namespace steps

std::string FakeStepWord(const Step& s) {
  const std::string& verb = VerbWords().at(s.verb);
  const std::string n = std::to_string(s.number);
  switch (s.verb) {
    case Verb::kPrint:
    case Verb::kPrintErr: return verb + " " + s.text;
    case Verb::kEnv:
    case Verb::kCat: return verb + " " + s.path;
    case Verb::kWrite: return verb + " " + s.path + " " + s.text;
    case Verb::kCount:
    case Verb::kAlloc:
    case Verb::kExit:
    case Verb::kSleep: return verb + " " + n;
    case Verb::kTrapTerm: return verb + " " + n + (s.text.empty() ? "" : " " + s.text);
    case Verb::kCwd:
    case Verb::kUid:
    case Verb::kHostname:
    case Verb::kIgnoreTerm:
    case Verb::kRun: break;
  }
  return verb;
}

std::vector<std::string> FakeProgramWords(const Program& program) {
  std::vector<std::string> words;
  words.reserve(program.size());
  for (const Step& s : program) words.push_back(FakeStepWord(s));
  return words;
}

Result<Step> ParseFakeStep(const std::string& word) {
  static const std::map<std::string, Verb> kVerbs = [] {
    std::map<std::string, Verb> verbs;
    for (const auto& [verb, name] : VerbWords()) verbs[name] = verb;
    return verbs;
  }();
  const size_t space = word.find(' ');
  const bool has_rest = space != std::string::npos;
  const std::string rest = has_rest ? word.substr(space + 1) : "";
  const Status bad =
      Status::InvalidArgument("step \"" + word + "\": not a step of the fake's language");
  auto it = kVerbs.find(word.substr(0, space));
  if (it == kVerbs.end()) return bad;
  Step step{it->second, "", "", 0};
  switch (step.verb) {
    case Verb::kPrint:
    case Verb::kPrintErr: step.text = rest; return step;
    case Verb::kCwd:
    case Verb::kUid:
    case Verb::kHostname:
    case Verb::kIgnoreTerm:
    case Verb::kRun:
      if (has_rest) return bad;
      return step;
    case Verb::kEnv:
    case Verb::kCat:
      if (rest.empty() || rest.find(' ') != std::string::npos) return bad;
      step.path = rest;
      return step;
    case Verb::kWrite: {
      const size_t sep = rest.find(' ');
      step.path = rest.substr(0, sep);
      if (step.path.empty()) return bad;
      step.text = sep == std::string::npos ? "" : rest.substr(sep + 1);
      return step;
    }
    case Verb::kCount:
      if (!ParseNumber(rest, kFakeMaxCount, &step.number)) return bad;
      return step;
    case Verb::kAlloc:
      if (!ParseNumber(rest, int64_t{1} << 30, &step.number)) return bad;
      return step;
    case Verb::kExit:
      if (!ParseNumber(rest, 255, &step.number)) return bad;
      return step;
    case Verb::kSleep:
      if (!ParseNumber(rest, kFakeMaxSleepMs, &step.number)) return bad;
      return step;
    case Verb::kTrapTerm: {
      const size_t sep = rest.find(' ');
      if (!ParseNumber(rest.substr(0, sep), 255, &step.number)) return bad;
      if (sep != std::string::npos) step.text = rest.substr(sep + 1);
      return step;
    }
  }
  return bad;
}

}  // namespace petrel::testing
