"""Nothing user-supplied ever runs as shell on the cluster.

Proof by parsing: ``literal_words`` below reads a command line with bash's quoting rules but accepts ONLY the
constructs that expand nothing - plain safe characters, '...' and "'" - and refuses everything else
(an unquoted $, `, ;, |, &, <, >, (, ), *, ?, [, ~, #, \\ or "..." with anything but a lone '). If the line
parses and gives back exactly the argv we started from, bash runs that argv and nothing else. The same holds one
level down for the script inside `bash -lc`.
"""

from __future__ import annotations

import pytest

from hpcci.config.models import SmokeTest
from hpcci.errors import ConfigError
from hpcci.shell import Pipe, command_line, expand, login_argv, path_variables, script, with_env

SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-")

NASTY = [
    "it's",
    'say "hi"',
    "a; rm -rf ~",
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "${HOME}",
    "$HOME",
    "line1\nline2",
    "x && y || z",
    "a | b > c < d",
    "*.sif",
    "~root",
    "#comment",
    "back\\slash",
    "",
    " leading and trailing ",
    "tab\there",
    "'\"'\"'",
    "ünïcødé",
    "-rf",
]


def literal_words(line: str) -> list[list[str]]:
    """Commands (split at unquoted newlines) of words, or AssertionError at anything bash would expand."""
    commands: list[list[str]] = [[]]
    word: str | None = None
    i = 0
    while i < len(line):
        c = line[i]
        if c in SAFE:
            word = (word or "") + c
            i += 1
        elif c == "'":
            end = line.index("'", i + 1)
            word = (word or "") + line[i + 1 : end]
            i = end + 1
        elif c == '"':
            assert line[i : i + 3] == '"\'"', f"double quotes with expansion possible at {i}: {line!r}"
            word = (word or "") + "'"
            i += 3
        elif c in " \n":
            if word is not None:
                commands[-1].append(word)
                word = None
            if c == "\n":
                commands.append([])
            i += 1
        else:
            raise AssertionError(f"unquoted {c!r} at {i} would be shell syntax: {line!r}")
    if word is not None:
        commands[-1].append(word)
    return [c for c in commands if c]


@pytest.mark.parametrize("nasty", NASTY)
def test_every_argument_reaches_the_remote_program_as_one_literal_word(nasty: str) -> None:
    argv = ["echo", nasty, "end"]
    assert literal_words(command_line(argv)) == [argv]


@pytest.mark.parametrize("nasty", NASTY)
def test_a_login_shell_script_runs_only_the_argv_it_was_built_from(nasty: str) -> None:
    steps = [["mkdir", "-p", "--", f"/scratch/{nasty}"], ["apptainer", "exec", "x.sif", "python3", nasty]]
    argv = login_argv(steps, modules=["apptainer"])
    outer = literal_words(command_line(argv))
    assert outer == [argv]
    inner = literal_words(argv[2])
    assert inner == [["set", "-e", "-o", "pipefail"], ["module", "load", "apptainer"], *steps]


def test_a_test_command_with_shell_syntax_stays_data() -> None:
    test = SmokeTest(name="t", command="python3 -c 'print(1)'; touch /tmp/pwned $(id)")
    line = command_line(["apptainer", "exec", "x.sif", *test.argv])
    assert literal_words(line) == [
        ["apptainer", "exec", "x.sif", "python3", "-c", "print(1);", "touch", "/tmp/pwned", "$(id)"]
    ]


def test_env_assignments_are_words_for_env_not_shell() -> None:
    argv = with_env({"APPTAINER_TMPDIR": "/s/$(x) y"}, ["apptainer", "build"])
    assert argv == ["env", "APPTAINER_TMPDIR=/s/$(x) y", "apptainer", "build"]
    assert literal_words(command_line(argv)) == [argv]


def test_env_names_that_are_not_identifiers_are_refused() -> None:
    with pytest.raises(ConfigError):
        with_env({"A=B; touch x": "1"}, ["true"])


def test_a_nul_byte_is_refused_before_anything_runs() -> None:
    with pytest.raises(ConfigError):
        command_line(["echo", "a\0b"])


def test_an_empty_command_is_refused() -> None:
    with pytest.raises(ValueError):
        command_line([])


def test_script_stops_at_the_first_failing_step() -> None:
    assert script([["true"]]).splitlines()[0] == "set -e -o pipefail"


@pytest.mark.parametrize("nasty", NASTY)
def test_a_pipe_joins_quoted_commands_with_the_only_operator(nasty: str) -> None:
    pipe = Pipe(["curl", "--config", "-"], ["tee", "--", f"/s/{nasty}"], ["sha256sum"])
    line = script([pipe]).split("\n", 1)[1]
    parts = [literal_words(p) for p in split_pipes(line)]
    assert parts == [[["curl", "--config", "-"]], [["tee", "--", f"/s/{nasty}"]], [["sha256sum"]]]


def split_pipes(line: str) -> list[str]:
    """Split at unquoted ' | ' (inside '...' a | is data)."""
    parts, current, quoted = [], "", False
    i = 0
    while i < len(line):
        if not quoted and line.startswith('"\'"', i):  # a lone quote: "'"
            current, i = current + line[i : i + 3], i + 3
            continue
        if line[i] == "'":
            quoted = not quoted
        if not quoted and line.startswith(" | ", i):
            parts.append(current)
            current, i = "", i + 3
            continue
        current += line[i]
        i += 1
    return [*parts, current]


def test_cluster_path_variables_are_found_and_substituted_in_python() -> None:
    assert path_variables(["$SCRATCH/hpcci", "${WORK}/x", "$SCRATCH/y"]) == ["SCRATCH", "WORK"]
    env = {"SCRATCH": "/scratch/u 1", "WORK": "/w"}
    assert expand("$SCRATCH/hpcci", env) == "/scratch/u 1/hpcci"
    assert expand("${WORK}/x", env) == "/w/x"
    assert expand("~/x", {"HOME": "/home/u"}) == "/home/u/x"


def test_a_substituted_value_is_not_expanded_again() -> None:
    # a value holding $(...) stays literal: substitution happens once, in Python, and the result is quoted
    path = expand("$SCRATCH/hpcci", {"SCRATCH": "/s/$(touch x)"})
    assert literal_words(command_line(["mkdir", "-p", path])) == [["mkdir", "-p", "/s/$(touch x)/hpcci"]]


def test_an_unset_path_variable_says_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"uses \$SCRATCH, which is not set in a login shell"):
        expand("$SCRATCH/hpcci", {}, what="cluster x: paths.scratch")
