"""The kernel against jupyter_kernel_test's protocol checks: every reply is
validated against the message specification."""

from __future__ import annotations

import jupyter_kernel_test

from conftest import KERNEL_NAME, dryrun_text


class CiaoKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL_NAME
    language_name = "python"
    file_extension = ".py"

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

    code_execute_result = [
        {"code": "%dryrun\nprint(1)", "result": dryrun_text()},
        {"code": "%dryrun\nprint(2)", "result": dryrun_text()},
        {"code": "%dryrun\n%cpu=2\nprint(3)", "result": dryrun_text(resources="cpu=2")},
    ]

    # Matches exactly one distinct cell above, which test_history runs at least three times.
    code_history_pattern = "%dryrun*print(2)"
    supported_history_operations = ("tail", "range", "search")

    code_generate_error = "%wroker=2"

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
