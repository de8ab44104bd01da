#include "tests/lib/conformance.h"

#include <cstdlib>

#include "tests/lib/doctest_main.h"

namespace petrel::testing {
namespace {

const ConformanceTarget* g_target = nullptr;

// `s` as one word of sh: in single quotes, each ' written as '\''.
std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string Line(const std::string& text) { return "printf '%s\\n' " + Quote(text); }

// A variable name as sh takes it after $; anything else would be code.
bool IsShellName(const std::string& name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok =
        c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string ShellStep(const Step& s) {
  using V = Step::Verb;
  const std::string n = std::to_string(s.number);
  switch (s.verb) {
    case V::kPrint: return Line(s.text);
    case V::kPrintErr: return Line(s.text) + " >&2";
    case V::kEnv:
      if (!IsShellName(s.path)) std::abort();  // the suite's own names only
      return "printf '%s=%s\\n' " + Quote(s.path) + " \"$" + s.path + "\"";
    case V::kCwd: return "pwd";
    case V::kUid: return "id -u";
    case V::kHostname: return "hostname";
    case V::kCat: return "cat " + Quote(s.path);
    case V::kWrite: return Line(s.text) + " > " + Quote(s.path);
    case V::kCount:
      return "i=0; while [ $i -lt " + n + " ]; do printf '%019d\\n' $i; i=$((i+1)); done";
    // A child OOM-killed ends the container too, as the step promises.
    case V::kAlloc:
      return "dd if=/dev/zero of=/dev/null bs=" + n + "M count=1 2>/dev/null || exit $?";
    case V::kTrapTerm:
      return "trap " + Quote((s.text.empty() ? "" : Line(s.text) + "; ") + "exit " + n) + " TERM";
    case V::kIgnoreTerm: return "trap '' TERM";
    // Short sleeps: sh runs a trap only between commands.
    case V::kRun: return "while :; do sleep 0.1; done";
    case V::kExit: return "exit " + n;
  }
  std::abort();
}

std::string FakeStep(const Step& s) {
  using V = Step::Verb;
  const std::string n = std::to_string(s.number);
  switch (s.verb) {
    case V::kPrint: return "print " + s.text;
    case V::kPrintErr: return "print-err " + s.text;
    case V::kEnv: return "env " + s.path;
    case V::kCwd: return "cwd";
    case V::kUid: return "id";
    case V::kHostname: return "hostname";
    case V::kCat: return "cat " + s.path;
    case V::kWrite: return "write " + s.path + " " + s.text;
    case V::kCount: return "count " + n;
    case V::kAlloc: return "alloc " + n;
    case V::kTrapTerm: return "trap-term " + n + (s.text.empty() ? "" : " " + s.text);
    case V::kIgnoreTerm: return "ignore-term";
    case V::kRun: return "run";
    case V::kExit: return "exit " + n;
  }
  std::abort();
}

}  // namespace

namespace steps {
Step Print(std::string text) { return {Step::Verb::kPrint, "", std::move(text), 0}; }
Step PrintErr(std::string text) { return {Step::Verb::kPrintErr, "", std::move(text), 0}; }
Step Env(std::string name) { return {Step::Verb::kEnv, std::move(name), "", 0}; }
Step Cwd() { return {Step::Verb::kCwd, "", "", 0}; }
Step Uid() { return {Step::Verb::kUid, "", "", 0}; }
Step Hostname() { return {Step::Verb::kHostname, "", "", 0}; }
Step Cat(std::string path) { return {Step::Verb::kCat, std::move(path), "", 0}; }
Step Write(std::string path, std::string text) {
  return {Step::Verb::kWrite, std::move(path), std::move(text), 0};
}
Step Count(int64_t lines) { return {Step::Verb::kCount, "", "", lines}; }
Step Alloc(int64_t mib) { return {Step::Verb::kAlloc, "", "", mib}; }
Step TrapTerm(int code, std::string text) {
  return {Step::Verb::kTrapTerm, "", std::move(text), code};
}
Step IgnoreTerm() { return {Step::Verb::kIgnoreTerm, "", "", 0}; }
Step Run() { return {Step::Verb::kRun, "", "", 0}; }
Step Exit(int code) { return {Step::Verb::kExit, "", "", code}; }
}  // namespace steps

ContainerCommand ShellCommand(const Program& program) {
  std::string script;
  for (const Step& s : program) script += (script.empty() ? "" : "\n") + ShellStep(s);
  return {{"/bin/sh", "-c"}, {script}};
}

ContainerCommand FakeCommand(const Program& program) {
  ContainerCommand c{{"petrel-fake"}, {}};
  for (const Step& s : program) c.args.push_back(FakeStep(s));
  return c;
}

int RunRuntimeConformance(int argc, char** argv, const ConformanceTarget& target) {
  g_target = &target;
  const int rc = RunDoctest(argc, argv);
  g_target = nullptr;
  return rc;
}

const ConformanceTarget& CurrentTarget() {
  if (g_target == nullptr) std::abort();
  return *g_target;
}

}  // namespace petrel::testing
