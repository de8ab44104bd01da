#include "flags.h"

#include <utility>

namespace petrelctl {

std::string ParsedArgs::Last(const std::string& name, const std::string& fallback) const {
  auto it = flags.find(name);
  return it == flags.end() || it->second.empty() ? fallback : it->second.back();
}

std::vector<std::string> ParsedArgs::All(const std::string& name) const {
  auto it = flags.find(name);
  return it == flags.end() ? std::vector<std::string>() : it->second;
}

petrel::Result<ParsedArgs> ParseFlags(const std::vector<std::string>& args,
                                      const std::vector<FlagDef>& defs) {
  ParsedArgs out;
  bool flags_ended = false;
  for (size_t i = 0; i < args.size(); i++) {
    const std::string& arg = args[i];
    if (flags_ended || arg.size() < 2 || arg[0] != '-') {
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    const FlagDef* def = nullptr;
    std::string value;
    bool has_value = false;
    std::string shown;  // the flag as the user wrote it, for errors
    if (arg[1] == '-') {
      std::string name = arg.substr(2);
      if (size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        has_value = true;
        name.resize(eq);
      }
      shown = "--" + name;
      for (const FlagDef& d : defs) def = d.name == name ? &d : def;
    } else {
      shown = arg.substr(0, 2);
      for (const FlagDef& d : defs) def = d.short_name == arg[1] ? &d : def;
      if (arg.size() > 2) {
        // "-ojson" and "-o=json"; a switch takes nothing glued to it.
        value = arg.substr(arg[2] == '=' ? 3 : 2);
        has_value = true;
      }
    }
    if (def == nullptr) return petrel::Status::InvalidArgument("unknown flag \"" + shown + "\"");
    if (def->value_name.empty()) {
      if (has_value) {
        return petrel::Status::InvalidArgument("flag " + shown + " takes no value");
      }
      out.flags[def->name].push_back("true");
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return petrel::Status::InvalidArgument("flag " + shown + " needs a value (" +
                                               def->value_name + ")");
      }
      value = args[++i];
    }
    out.flags[def->name].push_back(std::move(value));
  }
  return out;
}

}  // namespace petrelctl
