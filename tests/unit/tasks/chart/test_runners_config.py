"""The cache section merged into a templated runners.config: everything else comes back byte for byte.

The configs reproduce what published charts and teams put in runners.config (see tests/charts/README.md for the
sources): actions inside TOML strings with quotes of their own, bare ``{{ … | quote }}`` values, ``{{- if }}``
blocks around other sections, a stale gcs cache section. Rendering them for real is tests/integration/chart/.
"""

from __future__ import annotations

import tomllib

import pytest

from runner_cache.errors import ConfigError
from runner_cache.tasks.chart.runners_config import (
    cache_section,
    describe_change,
    merge_cache_section,
    outside_cache_section,
)

INTENDED = {
    "Type": "s3",
    "Path": "team-a",
    "Shared": True,
    "ServerAddress": "minio.example.com:9000",
    "BucketName": "ci-cache",
    "BucketLocation": "eu-west-1",
    "Insecure": True,
    "PathStyle": True,
}
OURS = {
    "Type": "s3",
    "Path": "team-a",
    "Shared": True,
    "s3": {
        "ServerAddress": "minio.example.com:9000",
        "BucketName": "ci-cache",
        "BucketLocation": "eu-west-1",
        "Insecure": True,
        "PathStyle": True,
    },
}

# A team's own config, as installed: kubernetes settings, comments, actions in strings with inner quotes,
# bare values, and a conditional section.
TEAM = """\
# ci runner of team A, tuned by hand
[[runners]]
  output_limit = 16384
  clone_url = "http://gitlab-webservice-default.gitlab.svc:8181"
  [runners.kubernetes]
    namespace = "{{.Release.Namespace}}"
    image = "{{ printf "%s/%s:%s" .Values.runners.job.registry .Values.runners.job.repository .Values.runners.job.tag }}"
    privileged = {{ .Values.runners.privileged }}
    helper_image = {{ .Values.runners.helperImage | quote }}
    cpu_limit = "2"   # per job
    memory_limit = "4Gi"
  {{- if .Values.runners.gpu }}
  [runners.kubernetes.node_selector]
    "nvidia.com/gpu" = "true"
  {{- else }}
  [runners.kubernetes.node_selector]
    "pool" = "ci"
  {{- end }}
"""


def test_a_teams_config_comes_back_byte_for_byte_with_our_section_added() -> None:
    merged = merge_cache_section(TEAM, INTENDED)
    assert merged.text.startswith(TEAM)
    assert outside_cache_section(merged.text) == TEAM
    assert cache_section(merged.text) == OURS
    added = merged.text[len(TEAM) :]
    assert added.splitlines()[0] == "  [runners.cache]", "indented like the team's other subtables"
    assert merged.notes == []


def test_a_stale_gcs_section_is_replaced_not_merged_into() -> None:
    config = TEAM.replace(
        "  {{- if .Values.runners.gpu }}",
        """\
  [runners.cache]
    Type = "gcs"
    Shared = false
    MaxUploadedArchiveSize = 104857600   # 100 MiB
    [runners.cache.gcs]
      BucketName = "old-ci-cache"
      CredentialsFile = "/secrets/gcs.json"
  {{- if .Values.runners.gpu }}""",
    )
    merged = merge_cache_section(config, INTENDED)
    assert cache_section(merged.text) == {**OURS, "MaxUploadedArchiveSize": 104857600}
    assert "gcs" not in merged.text.split("[runners.cache]")[1].split("{{- if")[0]
    assert "MaxUploadedArchiveSize = 104857600   # 100 MiB" in merged.text, (
        "the team's other cache keys keep their line"
    )
    assert outside_cache_section(merged.text) == outside_cache_section(config)
    assert merged.text.startswith(config.split("  [runners.cache]")[0])
    assert merged.text.endswith(config[config.index("  {{- if .Values.runners.gpu }}") :])
    assert any("[runners.cache.gcs]" in note for note in merged.notes)


def test_credentials_in_the_s3_section_are_dropped_and_named_without_their_values() -> None:
    config = '[[runners]]\n  [runners.cache]\n    Type = "s3"\n    [runners.cache.s3]\n      AccessKey = "AKIA-hand-written"\n      SecretKey = "hand-written-secret"\n      AuthenticationType = "iam"\n'
    merged = merge_cache_section(config, INTENDED)
    assert "hand-written" not in merged.text and "AuthenticationType" not in merged.text
    assert cache_section(merged.text) == OURS
    notes = " ".join(merged.notes)
    assert "AccessKey, SecretKey" in notes and "AuthenticationType" in notes and "hand-written" not in notes


@pytest.mark.parametrize(
    "line",
    [
        '    image = "{{ printf "%s/%s:%s" .Values.a .Values.b .Values.c }}"',  # quotes of the action inside a string
        "    image = '{{ printf \"%s\" .Values.a }}'",  # …inside a literal string
        '    environment = ["A={{ .Values.a }}", "B={{ "}}" }}"]',  # `}}` inside the action's own string
        "    privileged = {{ .Values.privileged }}",  # a bare value
        "    helper_image = {{ .Values.helper | quote }}",  # a bare quoted value
        "    {{ .Values.key }} = true",  # an action as a key
        "    poll_timeout = {{ .Values.t }}0  # a bare value glued to text",
        '    {{- include "extra" . | nindent 4 }}',  # a line of its own
        "    {{- $ns := .Release.Namespace }}",  # a variable
        '    {{/* a template comment with } and " */}}',
        '    script = """\n{{- if .x }}\necho "}}"\n{{- end }}\n"""',  # a multi-line string holding a block
        '    image = "{{ printf "%s:%s"\n       .Values.repo .Values.tag }}"',  # an action spanning lines
    ],
)
def test_every_action_comes_back_as_it_was(line: str) -> None:
    config = f"[[runners]]\n  [runners.kubernetes]\n{line}\n"
    merged = merge_cache_section(config, INTENDED)
    assert merged.text.startswith(config)
    assert cache_section(merged.text) == OURS


def test_a_templated_value_among_the_teams_cache_keys_is_kept() -> None:
    config = '[[runners]]\n  [runners.cache]\n    MaxUploadedArchiveSize = {{ .Values.maxArchive }}\n    Type = "{{ .Values.cacheType }}"\n'
    merged = merge_cache_section(config, INTENDED)
    assert "    MaxUploadedArchiveSize = {{ .Values.maxArchive }}\n" in merged.text
    assert "cacheType" not in merged.text, "Type is ours: the templated one is replaced"
    assert cache_section(merged.text) == {**OURS, "MaxUploadedArchiveSize": "{{ .Values.maxArchive }}"}


def test_a_section_after_a_conditional_block_goes_after_its_end() -> None:
    config = '[[runners]]\n  [runners.kubernetes]\n    image = "alpine"\n  {{- if .Values.gpu }}\n  [runners.kubernetes.node_selector]\n    gpu = "true"\n  {{- end }}\n'
    merged = merge_cache_section(config, INTENDED)
    assert merged.text.startswith(config)
    assert merged.text[len(config) :].startswith("  [runners.cache]\n")


def test_a_conditional_before_the_next_section_stays_with_that_section() -> None:
    config = (
        '[[runners]]\n  [runners.cache]\n    Type = "gcs"\n'
        '  {{- if .Values.gpu }}\n  [runners.kubernetes.node_selector]\n    gpu = "true"\n  {{- end }}\n'
    )
    merged = merge_cache_section(config, INTENDED)
    assert merged.text.endswith(
        '  {{- if .Values.gpu }}\n  [runners.kubernetes.node_selector]\n    gpu = "true"\n  {{- end }}\n'
    )
    assert cache_section(merged.text) == OURS


@pytest.mark.parametrize(
    ("config", "line"),
    [
        (
            '[[runners]]\n  [runners.kubernetes]\n    image = "a"\n  {{- if .Values.cache }}\n  [runners.cache]\n    Type = "s3"\n  {{- end }}\n',
            "(line 5) is inside the template block opened at line 4",
        ),
        (
            '[[runners]]\n  image = "{{ printf "%s"\n    .x }}"\n  {{- if .y }}\n  [runners.cache]\n    Type = "s3"\n  {{- end }}\n',
            "(line 5) is inside the template block opened at line 4",
        ),
        (
            '[[runners]]\n  {{- with .Values.cache }}\n  [runners.cache]\n    Path = "{{ .path }}"\n  {{- end }}\n',
            "(line 3) is inside the template block opened at line 2",
        ),
        (
            '[[runners]]\n  [runners.cache]\n    Type = "s3"\n    {{- if .Values.shared }}\n    Shared = true\n    {{- end }}\n',
            "line 4 inside [runners.cache] holds a template conditional",
        ),
        (
            '[[runners]]\n  [runners.cache]\n    Type = "s3"\n    {{ include "more-cache" . }}\n  [runners.kubernetes]\n',
            "line 4 inside [runners.cache] holds a template action",
        ),
        (
            '[[runners]]\n  [runners.kubernetes]\n    image = "a"\n  {{- if .Values.x }}\n  [runners.custom]\n    a = 1\n',
            "ends inside the template block opened at line 4",
        ),
        (
            '[[runners]]\n  [runners.kubernetes]\n    image = "a"\n  {{- /* end */ -}}\n',
            "line 4 ends with a `-}}` action",
        ),
        ('[[runners]]\n  [runners.kubernetes]\n    image = "a\n', "not TOML at line 3"),
        ("[[runners]]\n  name = 'a'\n[[runners]]\n  name = 'b'\n", "exactly one [[runners]]"),
        ('[[runners]]\n  image = "{{ .x }\n', "never closed"),
    ],
)
def test_refusals_name_the_line(config: str, line: str) -> None:
    with pytest.raises(ConfigError) as refused:
        merge_cache_section(config, INTENDED)
    assert line in str(refused.value)


def test_an_empty_config_gets_one_runner_with_our_section() -> None:
    merged = merge_cache_section("", INTENDED)
    assert tomllib.loads(merged.text) == {"runners": [{"cache": OURS}]}


def test_the_merge_is_idempotent_and_adds_no_trailing_whitespace() -> None:
    once = merge_cache_section(TEAM, INTENDED).text
    assert merge_cache_section(once, INTENDED).text == once
    # charts 0.29–0.52 render `tpl (toYaml …)`: one trailing blank makes go-yaml quote the text and break `tpl`
    assert all(line == line.rstrip() for line in once.splitlines())


def test_the_change_in_words() -> None:
    before = (
        TEAM
        + '  [runners.cache]\n    Type = "gcs"\n    [runners.cache.gcs]\n      BucketName = "old"\n    [runners.cache.s3]\n      SecretKey = "hand-written-secret"\n'
    )
    after = merge_cache_section(before, INTENDED).text
    words = describe_change(before, after)
    assert 'runners.config [runners.cache] Type: "gcs" → "s3"' in words
    assert "runners.config [runners.cache.gcs] removed" in words
    assert "runners.config [runners.cache.s3] SecretKey: (set) → (none)" in words
    assert 'runners.config [runners.cache.s3] ServerAddress: (none) → "minio.example.com:9000"' in words
    assert words[-1] == "the rest of runners.config unchanged"
    assert "hand-written" not in " ".join(words)
    assert describe_change(after, after) == []
    assert (
        describe_change(before, after.replace("16384", "8192"))[-1] == "runners.config changed outside [runners.cache]"
    )
