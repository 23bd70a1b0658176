"""The kernel against jupyter_kernel_test's protocol checks: every reply is
validated against the message specification. The kernel runs real jobs: it
is configured (through the environment, as a user would) for the Kubernetes
API stand-in (``fake-cluster``, see cluster.py), a real registry and a
mirror of the base images, so ``code_hello_world``, ``code_stderr`` and
``code_generate_error`` are real submissions.

How the samples meet the suite's expectations:
- hello world: the suite takes the first ``stream`` message named stdout
  and wants "hello, world" in it. A job's stdout is what its replicas print,
  prefixed (``[main-0] hello, world``); ciao's own lines (image, job created,
  replica states, final condition) go to stderr, so the first stdout message
  is the program's.
- stderr: Kubernetes merges a container's stderr into its log, which ciao
  shows on stdout under the replica's prefix; the cell's stderr stream holds
  ciao's own lines about the job. ``test_the_job_prints_on_stdout_and_ciao_on_stderr``
  pins both down.
- display data: every job opens its live table as a ``display_data``.
- error: the suite wants exactly one output, the error. The sample ships its
  code in a ConfigMap (no image build, so no build lines) to a namespace the
  cluster does not have: the API server refuses the first object and that is
  the cell's only output.
"""

from __future__ import annotations


import jupyter_kernel_test

from cluster import environment, stack
from conftest import KERNEL_NAME, dryrun_text


class CiaoKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL_NAME
    language_name = "python"
    file_extension = ".py"

    @classmethod
    def setUpClass(cls) -> None:
        s = stack()
        target = f"{s.registry.host}/test/python:<content digest>"
        cls.code_execute_result = [
            {"code": "%dryrun\nprint(1)", "result": dryrun_text(backend="kubernetes", target=target)},
            {"code": "%dryrun\nprint(2)", "result": dryrun_text(backend="kubernetes", target=target)},
            {"code": "%dryrun\n%cpu=2\nprint(3)", "result": dryrun_text(resources="cpu=2", backend="kubernetes", target=target)},
        ]
        with environment(s.kernel_env()):
            super().setUpClass()

    complete_code_samples = [
        "%dryrun\nprint(1)",
        "%framework=tensorflow\n%worker=2;%cpu=1\nimport tensorflow as tf",
        "for i in range(3):\n    pass\n",
        "%wroker=2",  # a mistake, reported when the cell runs
    ]
    incomplete_code_samples = [
        "for i in range(3):",
        "%worker=2\nprint((",
        "x = '''",
    ]
    invalid_code_samples = [
        ")",
        "x = [1, 2)",
        "%worker=",
    ]

    completion_samples = [
        {"text": "%frame", "matches": {"%framework="}},
        {"text": "%framework=t", "matches": {"tensorflow", "trainjob"}},
    ]

    code_inspect_sample = "%framework=tensorflow"
    # One magic's documentation goes to the pager (an execute_reply payload).
    code_page_something = "%help framework"

    # Set in setUpClass (the target names the session's registry).
    code_execute_result: list[dict[str, str]] = []

    # Matches exactly one distinct cell above, which test_history runs at least three times.
    code_history_pattern = "%dryrun*print(2)"
    supported_history_operations = ("tail", "range", "search")

    code_hello_world = 'print("hello, world")'
    code_stderr = 'import sys\nprint("test", file=sys.stderr)'
    code_generate_error = "%provider=configmap\n%namespace=no-such-namespace\nprint('never runs')"
    # Every job shows a live table (display_data with a display id, text/plain and text/html).
    code_display_data = [{"code": "print('a job with a live table')", "mime": "text/html"}]

    def test_a_bad_magic_is_one_magic_error_naming_the_line_and_the_fix(self) -> None:
        self.flush_channels()
        reply, outputs = self.execute_helper("%wroker=2")
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "MagicError")
        self.assertEqual([m["msg_type"] for m in outputs], ["error"])
        error = outputs[0]["content"]
        self.assertEqual(error["ename"], "MagicError")
        self.assertIn("line 1", error["evalue"])
        self.assertIn("%worker", error["evalue"])
        self.assertEqual(error["traceback"][0], f"MagicError: {error['evalue']}")

    def test_the_job_prints_on_stdout_and_ciao_on_stderr(self) -> None:
        self.flush_channels()
        reply, outputs = self.execute_helper(self.code_stderr, timeout=60)
        self.assertEqual(reply["content"]["status"], "ok")
        stdout = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")
        stderr = "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream" and m["content"]["name"] == "stderr")
        self.assertEqual(stdout, "[main-0] test\n")
        self.assertRegex(stderr, r"\[ciao\] Job default/python-[0-9a-f]{8}(-\d+)? created: 1 replica expected\n")
        self.assertRegex(stderr, r"\[ciao\] Job default/python-\S+ Succeeded after ")

    def test_the_error_sample_is_the_api_servers_refusal(self) -> None:
        self.flush_channels()
        reply, outputs = self.execute_helper(self.code_generate_error)
        self.assertEqual(reply["content"]["ename"], "NamespaceNotFound")
        self.assertIn('namespaces "no-such-namespace" not found', reply["content"]["evalue"])
        self.assertEqual([m["msg_type"] for m in outputs], ["error"])
