/* `rhizos completion bash|zsh|fish`: scripts printed from the same tables
 * the parser uses, so a new command or option completes without anyone
 * remembering to edit a script. zsh runs the bash function through its
 * bashcompinit layer: one logic to test, not two. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void words(const cli_command *cmds, size_t n)
{
    for (size_t i = 0; i < n; i++)
        printf("%s%s", i ? " " : "", cmds[i].name);
}

static void options(const cli_option *opts, size_t n, bool with_value)
{
    bool first = true;
    for (size_t i = 0; i < n; i++)
        if (opts[i].takes_value == with_value) {
            printf("%s--%s", first ? "" : " ", opts[i].name);
            first = false;
        }
}

static void bash(const cli_command *cmds, size_t n_cmds, const cli_option *opts,
                 size_t n_opts)
{
    printf("# rhizos completion for bash: source <(rhizos completion bash)\n"
           "_rhizos() {\n"
           "    local cur=${COMP_WORDS[COMP_CWORD]} prev= i cmd= at=0\n"
           "    local valued=' -t -i ");
    options(opts, n_opts, true);
    /* The command is the first word that is neither an option nor the
     * value of one. */
    printf(" '\n"
           "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
           "        local w=${COMP_WORDS[i]}\n"
           "        if [[ $valued == *\" $prev \"* ]]; then prev=; continue; fi\n"
           "        prev=$w\n"
           "        case $w in -*) ;; *) cmd=$w; at=$i; break ;; esac\n"
           "    done\n"
           "    prev=${COMP_WORDS[COMP_CWORD-1]}\n"
           "    if [[ $cur == -* ]]; then\n"
           "        COMPREPLY=($(compgen -W '");
    options(opts, n_opts, true);
    printf(" ");
    options(opts, n_opts, false);
    printf("' -- \"$cur\"))\n"
           "        return\n"
           "    fi\n"
           "    if [[ $valued == *\" $prev \"* ]]; then\n"
           "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
           "        return\n"
           "    fi\n"
           "    if [[ -z $cmd ]]; then\n"
           "        COMPREPLY=($(compgen -W '");
    words(cmds, n_cmds);
    printf("' -- \"$cur\"))\n"
           "        return\n"
           "    fi\n"
           "    if ((at + 1 == COMP_CWORD)); then\n"
           "        case $cmd in\n");
    for (size_t i = 0; i < n_cmds; i++)
        if (cmds[i].verbs[0])
            printf("        %s) COMPREPLY=($(compgen -W '%s' -- \"$cur\")); return ;;\n",
                   cmds[i].name, cmds[i].verbs);
    printf("        help) COMPREPLY=($(compgen -W '");
    words(cmds, n_cmds);
    printf("' -- \"$cur\")); return ;;\n"
           "        esac\n"
           "    fi\n"
           "    COMPREPLY=($(compgen -f -- \"$cur\"))\n"
           "}\n");
}

static void fish(const cli_command *cmds, size_t n_cmds, const cli_option *opts,
                 size_t n_opts)
{
    printf("# rhizos completion for fish: rhizos completion fish > "
           "~/.config/fish/completions/rhizos.fish\n"
           "complete -c rhizos -n __fish_use_subcommand -f -a '");
    words(cmds, n_cmds);
    printf("'\n");
    for (size_t i = 0; i < n_cmds; i++) {
        if (!cmds[i].verbs[0])
            continue;
        printf("complete -c rhizos -n '__fish_seen_subcommand_from %s; and not "
               "__fish_seen_subcommand_from %s' -f -a '%s'\n",
               cmds[i].name, cmds[i].verbs, cmds[i].verbs);
    }
    printf("complete -c rhizos -n '__fish_seen_subcommand_from help' -f -a '");
    words(cmds, n_cmds);
    printf("'\n");
    for (size_t i = 0; i < n_opts; i++)
        printf("complete -c rhizos -l %s%s\n", opts[i].name,
               opts[i].takes_value ? " -r" : "");
}

int cli_completion(const char *shell, const cli_command *cmds, size_t n_cmds,
                   const cli_option *opts, size_t n_opts)
{
    if (strcmp(shell, "bash") == 0) {
        bash(cmds, n_cmds, opts, n_opts);
        printf("complete -o filenames -F _rhizos rhizos\n");
    } else if (strcmp(shell, "zsh") == 0) {
        printf("# rhizos completion for zsh: source <(rhizos completion zsh)\n"
               "autoload -U +X bashcompinit && bashcompinit\n");
        bash(cmds, n_cmds, opts, n_opts);
        printf("complete -o filenames -F _rhizos rhizos\n");
    } else if (strcmp(shell, "fish") == 0) {
        fish(cmds, n_cmds, opts, n_opts);
    } else {
        fprintf(stderr, "rhizos: no completion for '%s' (bash, zsh or fish)\n", shell);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}
