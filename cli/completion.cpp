// SPDX-License-Identifier: Apache-2.0
#include "cli/completion.hpp"

#include <algorithm>
#include <ostream>

namespace kflex::cli {
namespace {

using Hint = CompletionHint;

struct Flag {
  std::vector<std::string> names;  // -t, --type
  std::string description;
  bool takes_value = false;
  Hint hint;
};

struct Command {
  std::string path;  // "" for kflex itself, "/ctx/list" for kflex ctx list
  std::vector<std::pair<std::string, std::string>> subcommands;  // name, description
  std::vector<Flag> flags;                                       // its own, then the global ones
  Hint positional;
};

std::string firstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

std::vector<Flag> flagsOf(const CLI::App& app, const CompletionHints& hints) {
  std::vector<Flag> flags;
  for (const CLI::Option* o : app.get_options()) {
    if (!o->nonpositional()) {
      continue;
    }
    Flag f;
    for (const auto& s : o->get_snames()) {
      f.names.push_back("-" + s);
    }
    for (const auto& l : o->get_lnames()) {
      f.names.push_back("--" + l);
    }
    f.description = firstLine(o->get_description());
    f.takes_value = o->get_items_expected_max() > 0;
    if (auto it = hints.options.find(o); it != hints.options.end()) {
      f.hint = it->second;
    }
    flags.push_back(std::move(f));
  }
  return flags;
}

void collect(const CLI::App& app, const std::string& path, const std::vector<Flag>& globals,
             const CompletionHints& hints, std::vector<Command>& out) {
  Command c;
  c.path = path;
  c.flags = flagsOf(app, hints);
  if (!path.empty()) {
    for (const auto& f : globals) {
      bool taken = false;
      for (const auto& own : c.flags) {
        for (const auto& n : f.names) {
          taken = taken || std::find(own.names.begin(), own.names.end(), n) != own.names.end();
        }
      }
      if (!taken && f.names != std::vector<std::string>{"--version"}) {
        c.flags.push_back(f);
      }
    }
  }
  if (auto it = hints.positionals.find(&app); it != hints.positionals.end()) {
    c.positional = it->second;
  }
  auto subs = app.get_subcommands([](const CLI::App* a) { return !a->get_name().empty() && !a->get_group().empty(); });
  for (const CLI::App* s : subs) {
    c.subcommands.push_back({s->get_name(), firstLine(s->get_description())});
  }
  out.push_back(c);
  for (const CLI::App* s : subs) {
    collect(*s, path + "/" + s->get_name(), globals, hints, out);
  }
}

// Single-quoted for sh and zsh.
std::string shQuote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  }
  return out + "'";
}

// Single-quoted for fish.
std::string fishQuote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) {
    if (ch == '\'' || ch == '\\') {
      out += '\\';
    }
    out += ch;
  }
  return out + "'";
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const auto& s : v) {
    out += (out.empty() ? "" : sep) + s;
  }
  return out;
}

// The case pattern that matches the command paths: /create|/ctx|...
std::vector<std::string> paths(const std::vector<Command>& cmds) {
  std::vector<std::string> out;
  for (const auto& c : cmds) {
    if (!c.path.empty()) {
      out.push_back(c.path);
    }
  }
  return out;
}

// A shell command printing the names a dynamic hint completes to; kc is the variable holding the
// --kubeconfig arguments seen on the command line.
std::string dynamicNames(const Hint& h, const std::string& kc) {
  if (h.kind == Hint::Kind::ControlPlanes) {
    return "kflex " + kc + " list -o name 2>/dev/null";
  }
  if (h.kind == Hint::Kind::Contexts) {
    return "kflex " + kc + " ctx list -o name 2>/dev/null";
  }
  return "";
}

void writeBash(const std::vector<Command>& cmds, std::ostream& out) {
  out << "# bash completion for kflex (made by 'kflex completion bash').\n"
         "# Load it in this shell with: source <(kflex completion bash)\n"
         "# or for every shell: kflex completion bash > ~/.local/share/bash-completion/completions/kflex\n"
         "_kflex() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}\n"
         "  local path='' w i\n"
         "  local -a kc=()\n"
         "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
         "    w=${COMP_WORDS[i]}\n"
         "    case $w in\n"
         "      -k|--kubeconfig) kc=(--kubeconfig \"${COMP_WORDS[i+1]}\") ;;\n"
         "    esac\n"
         "    [[ $w == -* ]] && continue\n"
         "    case \"$path/$w\" in\n"
         "      "
      << join(paths(cmds), "|") << ") path=\"$path/$w\" ;;\n"
      << "    esac\n"
         "  done\n"
         "  case \"$path:$prev\" in\n";
  for (const auto& c : cmds) {
    for (const auto& f : c.flags) {
      if (!f.takes_value) {
        continue;
      }
      std::vector<std::string> pats;
      for (const auto& n : f.names) {
        pats.push_back("\"" + c.path + ":" + n + "\"");
      }
      out << "    " << join(pats, "|") << ")\n";
      switch (f.hint.kind) {
        case Hint::Kind::Words:
          out << "      COMPREPLY=($(compgen -W " << shQuote(join(f.hint.words, " ")) << " -- \"$cur\")); return ;;\n";
          break;
        case Hint::Kind::Files:
          out << "      COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n";
          break;
        case Hint::Kind::ControlPlanes:
        case Hint::Kind::Contexts:
          out << "      COMPREPLY=($(compgen -W \"$(" << dynamicNames(f.hint, "\"${kc[@]}\"") << ")\" -- \"$cur\")); return ;;\n";
          break;
        case Hint::Kind::None:
          out << "      COMPREPLY=(); return ;;\n";
          break;
      }
    }
  }
  out << "  esac\n"
         "  local flags='' words=''\n"
         "  case $path in\n";
  for (const auto& c : cmds) {
    std::vector<std::string> flag_words;
    std::vector<std::string> sub_words;
    for (const auto& f : c.flags) {
      flag_words.insert(flag_words.end(), f.names.begin(), f.names.end());
    }
    for (const auto& [n, d] : c.subcommands) {
      sub_words.push_back(n);
    }
    out << "    " << (c.path.empty() ? "''" : "\"" + c.path + "\"") << ")\n"
        << "      flags=" << shQuote(join(flag_words, " ")) << "\n"
        << "      words=" << shQuote(join(sub_words, " ")) << "\n";
    if (std::string names = dynamicNames(c.positional, "\"${kc[@]}\""); !names.empty()) {
      out << "      words=\"$words $(" << names << ")\"\n";
    } else if (c.positional.kind == Hint::Kind::Words) {
      out << "      words=\"$words \"" << shQuote(join(c.positional.words, " ")) << "\n";
    }
    out << "      ;;\n";
  }
  out << "  esac\n"
         "  if [[ $cur == -* ]]; then\n"
         "    COMPREPLY=($(compgen -W \"$flags\" -- \"$cur\"))\n"
         "  else\n"
         "    COMPREPLY=($(compgen -W \"$words\" -- \"$cur\"))\n"
         "  fi\n"
         "}\n"
         "complete -o default -F _kflex kflex\n";
}

void writeZsh(const std::vector<Command>& cmds, std::ostream& out) {
  out << "#compdef kflex\n"
         "# zsh completion for kflex (made by 'kflex completion zsh').\n"
         "# Load it in this shell with: source <(kflex completion zsh)\n"
         "# or for every shell: kflex completion zsh > \"${fpath[1]}/_kflex\"\n"
         "_kflex() {\n"
         "  local p='' w i cur=${words[CURRENT]} prev=${words[CURRENT-1]}\n"
         "  local -a kc cmds flags names\n"
         "  for ((i = 2; i < CURRENT; i++)); do\n"
         "    w=${words[i]}\n"
         "    case $w in\n"
         "      (-k|--kubeconfig) kc=(--kubeconfig \"${words[i+1]}\") ;;\n"
         "    esac\n"
         "    [[ $w == -* ]] && continue\n"
         "    case \"$p/$w\" in\n"
         "      ("
      << join(paths(cmds), "|") << ") p=\"$p/$w\" ;;\n"
      << "    esac\n"
         "  done\n"
         "  case \"$p:$prev\" in\n";
  for (const auto& c : cmds) {
    for (const auto& f : c.flags) {
      if (!f.takes_value) {
        continue;
      }
      std::vector<std::string> pats;
      for (const auto& n : f.names) {
        pats.push_back("\"" + c.path + ":" + n + "\"");
      }
      out << "    (" << join(pats, "|") << ")\n";
      switch (f.hint.kind) {
        case Hint::Kind::Words:
          out << "      compadd -- " << join(f.hint.words, " ") << "; return ;;\n";
          break;
        case Hint::Kind::Files:
          out << "      _files; return ;;\n";
          break;
        case Hint::Kind::ControlPlanes:
        case Hint::Kind::Contexts:
          out << "      names=(${(f)\"$(" << dynamicNames(f.hint, "$kc") << ")\"}); compadd -a names; return ;;\n";
          break;
        case Hint::Kind::None:
          out << "      return 1 ;;\n";
          break;
      }
    }
  }
  out << "  esac\n"
         "  case $p in\n";
  for (const auto& c : cmds) {
    std::vector<std::string> sub_items;
    std::vector<std::string> flag_items;
    for (const auto& [n, d] : c.subcommands) {
      sub_items.push_back(shQuote(n + ":" + d));
    }
    for (const auto& f : c.flags) {
      for (const auto& n : f.names) {
        flag_items.push_back(shQuote(n + ":" + f.description));
      }
    }
    out << "    (" << (c.path.empty() ? "''" : "\"" + c.path + "\"") << ")\n"
        << "      cmds=(" << join(sub_items, " ") << ")\n"
        << "      flags=(" << join(flag_items, " ") << ")\n";
    if (std::string names = dynamicNames(c.positional, "$kc"); !names.empty()) {
      out << "      names=(${(f)\"$(" << names << ")\"})\n";
    } else if (c.positional.kind == Hint::Kind::Words) {
      out << "      names=(" << join(c.positional.words, " ") << ")\n";
    }
    out << "      ;;\n";
  }
  out << "  esac\n"
         "  if [[ $cur == -* ]]; then\n"
         "    _describe -t flags flag flags\n"
         "    return\n"
         "  fi\n"
         "  _describe -t commands command cmds\n"
         "  (( ${#names} )) && compadd -a names\n"
         "  return 0\n"
         "}\n"
         "if [[ ${zsh_eval_context[-1]} == loadautofunc ]]; then\n"
         "  _kflex \"$@\"\n"
         "else\n"
         "  compdef _kflex kflex\n"
         "fi\n";
}

void writeFish(const std::vector<Command>& cmds, std::ostream& out) {
  out << "# fish completion for kflex (made by 'kflex completion fish').\n"
         "# Load it in this shell with: kflex completion fish | source\n"
         "# or for every shell: kflex completion fish > ~/.config/fish/completions/kflex.fish\n"
         "function __kflex_path\n"
         "    set -l words (commandline -opc)\n"
         "    set -e words[1]\n"
         "    set -l p ''\n"
         "    for w in $words\n"
         "        if string match -q -- '-*' $w\n"
         "            continue\n"
         "        end\n"
         "        switch \"$p/$w\"\n"
         "            case "
      << join(paths(cmds), " ") << "\n"
      << "                set p \"$p/$w\"\n"
         "        end\n"
         "    end\n"
         "    echo $p\n"
         "end\n"
         "function __kflex_at\n"
         "    set -l p (__kflex_path)\n"
         "    test \"$p\" = \"$argv[1]\"\n"
         "end\n"
         "function __kflex_kubeconfig\n"
         "    set -l words (commandline -opc)\n"
         "    set -l i (contains -i -- --kubeconfig $words; or contains -i -- -k $words)\n"
         "    and test (count $words) -gt $i\n"
         "    and printf '%s\\n' --kubeconfig $words[(math $i + 1)]\n"
         "end\n"
         "complete -c kflex -f\n";
  for (const auto& c : cmds) {
    std::string cond = "-n " + fishQuote("__kflex_at '" + c.path + "'") + " ";
    for (const auto& [n, d] : c.subcommands) {
      out << "complete -c kflex " << cond << "-a " << fishQuote(n) << " -d " << fishQuote(d) << "\n";
    }
    if (c.positional.kind == Hint::Kind::ControlPlanes || c.positional.kind == Hint::Kind::Contexts) {
      std::string list = c.positional.kind == Hint::Kind::ControlPlanes ? "list" : "ctx list";
      out << "complete -c kflex " << cond << "-a " << fishQuote("(kflex (__kflex_kubeconfig) " + list + " -o name 2>/dev/null)")
          << "\n";
    } else if (c.positional.kind == Hint::Kind::Words) {
      out << "complete -c kflex " << cond << "-a " << fishQuote(join(c.positional.words, " ")) << "\n";
    }
    for (const auto& f : c.flags) {
      out << "complete -c kflex " << cond;
      for (const auto& n : f.names) {
        out << (n.rfind("--", 0) == 0 ? "-l " + n.substr(2) : n.size() == 2 ? "-s " + n.substr(1) : "-o " + n.substr(1))
            << " ";
      }
      if (f.takes_value) {
        out << (f.hint.kind == Hint::Kind::Files ? "-r " : "-x ");
        switch (f.hint.kind) {
          case Hint::Kind::Words:
            out << "-a " << fishQuote(join(f.hint.words, " ")) << " ";
            break;
          case Hint::Kind::Files:
            out << "-F ";
            break;
          case Hint::Kind::ControlPlanes:
            out << "-a " << fishQuote("(kflex (__kflex_kubeconfig) list -o name 2>/dev/null)") << " ";
            break;
          case Hint::Kind::Contexts:
            out << "-a " << fishQuote("(kflex (__kflex_kubeconfig) ctx list -o name 2>/dev/null)") << " ";
            break;
          case Hint::Kind::None:
            break;
        }
      }
      out << "-d " << fishQuote(f.description) << "\n";
    }
  }
}

}  // namespace

void writeCompletion(const CLI::App& app, const CompletionHints& hints, const std::string& shell, std::ostream& out) {
  std::vector<Command> cmds;
  collect(app, "", flagsOf(app, hints), hints, cmds);
  if (shell == "bash") {
    writeBash(cmds, out);
  } else if (shell == "zsh") {
    writeZsh(cmds, out);
  } else {
    writeFish(cmds, out);
  }
}

}  // namespace kflex::cli
