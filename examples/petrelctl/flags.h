// Command-line flags the way kubectl (pflag) reads them: "--name", "--name=V",
// "--name V", "-s", "-s V", "-sV", "-s=V", flags before or after the positional
// arguments, and "--" to end the flags.
#ifndef PETREL_EXAMPLES_PETRELCTL_FLAGS_H_
#define PETREL_EXAMPLES_PETRELCTL_FLAGS_H_

#include <map>
#include <string>
#include <vector>

#include "petrel/status.h"

namespace petrelctl {

// One flag a command accepts.
struct FlagDef {
  std::string name;        // long name without dashes: "output"
  char short_name = 0;     // 'o', or 0 for none
  std::string value_name;  // "FORMAT" for a flag with a value; "" for a switch
  std::string help;        // one line for the usage text
};

struct ParsedArgs {
  std::vector<std::string> positional;
  // By long name, every value in the order given; a switch has the value "true".
  std::map<std::string, std::vector<std::string>> flags;

  bool Has(const std::string& name) const { return flags.count(name) != 0; }
  // The last value given (a later flag overrides an earlier one), or `fallback`.
  std::string Last(const std::string& name, const std::string& fallback = "") const;
  // Every value given, for repeatable flags like apply's -f.
  std::vector<std::string> All(const std::string& name) const;
};

// Parses `args` against `defs`. Fails with InvalidArgument ("unknown flag \"--x\"",
// "flag --tail needs a value") on anything `defs` does not declare.
petrel::Result<ParsedArgs> ParseFlags(const std::vector<std::string>& args,
                                      const std::vector<FlagDef>& defs);

}  // namespace petrelctl

#endif  // PETREL_EXAMPLES_PETRELCTL_FLAGS_H_
