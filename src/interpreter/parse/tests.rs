use super::*;
use crate::interpreter::params::{
    BackendKind, CleanPolicy, OnInterrupt, Provider, Quantity, Resources, SecretEnv, Toleration, Volume,
};

fn fw() -> &'static Frameworks {
    Frameworks::embedded()
}

fn job_with(code: &str, default: &str) -> JobCell {
    match parse(code, fw(), default) {
        Ok(Cell::Job(j)) => *j,
        other => panic!("{code:?} → {other:?}"),
    }
}

fn job(code: &str) -> JobCell {
    job_with(code, "python")
}

fn err_with(code: &str, default: &str) -> MagicError {
    match parse(code, fw(), default) {
        Err(e) => e,
        Ok(c) => panic!("{code:?} parsed: {c:?}"),
    }
}

/// Asserts the error's line and that its message has every word.
fn err_at(code: &str, line: usize, words: &[&str]) -> MagicError {
    let e = err_with(code, "python");
    assert_eq!(e.line, line, "{e}");
    for w in words {
        assert!(e.message.contains(w), "{w:?} missing from: {e}");
    }
    e
}

fn q(s: &str) -> Option<Quantity> {
    Some(Quantity(s.into()))
}

fn roles(p: &JobParams) -> Vec<(&str, u32, Resources, usize)> {
    p.roles.iter().map(|r| (r.role.as_str(), r.replicas, r.resources.clone(), r.line)).collect()
}

fn res(cpu: Option<&str>, memory: Option<&str>, gpu: Option<u32>) -> Resources {
    Resources { cpu: cpu.and_then(q), memory: memory.and_then(q), gpu }
}

// ---- the original ciao README, verbatim ----

#[test]
fn readme_tensorflow_example_with_every_clean_policy() {
    for (word, policy) in [("all", CleanPolicy::All), ("running", CleanPolicy::Running), ("none", CleanPolicy::None)] {
        let cell = job(&format!("%framework=tensorflow\n%ps=1\n%worker=2\n%cleanPolicy={word}"));
        let p = &cell.params;
        assert_eq!(p.framework.as_deref(), Some("tensorflow"));
        assert_eq!(roles(p), [("ps", 1, Resources::default(), 2), ("worker", 2, Resources::default(), 3)]);
        assert_eq!(p.clean_policy, Some(policy));
        assert_eq!(cell.code, "\n\n\n");
    }
}

#[test]
fn readme_pytorch_example() {
    let cell = job("%framework=pytorch\n%master=1\n%worker=2\n%cleanPolicy=running");
    assert_eq!(cell.params.framework.as_deref(), Some("pytorch"));
    assert_eq!(roles(&cell.params), [("master", 1, Resources::default(), 2), ("worker", 2, Resources::default(), 3)]);
    assert_eq!(cell.params.clean_policy, Some(CleanPolicy::Running));
}

#[test]
fn readme_resources_example_keeps_the_code_on_its_line() {
    let code = "%framework=tensorflow\n%ps=1;%cpu=1;%memory=2Gi\n%worker=2;%cpu=2;%memory=4Gi\n%cleanPolicy=running\nimport tensorflow as tf\n";
    let cell = job(code);
    assert_eq!(
        roles(&cell.params),
        [("ps", 1, res(Some("1"), Some("2Gi"), None), 2), ("worker", 2, res(Some("2"), Some("4Gi"), None), 3)]
    );
    assert_eq!(cell.params.clean_policy, Some(CleanPolicy::Running));
    assert!(cell.params.resources.is_empty());
    assert_eq!(cell.code, "\n\n\n\nimport tensorflow as tf\n");
    assert_eq!(cell.code.lines().count(), code.lines().count());
}

#[test]
fn readme_placeholder_syntax_is_reported_not_accepted() {
    err_at("%framework=tensorflow\n%ps={number}", 2, &["bad number for %ps", "%ps=2"]);
    err_at("%cleanPolicy=all/running/none", 1, &["not one of all, running, none", "%cleanPolicy=running"]);
}

// ---- plain cells and blanking ----

#[test]
fn a_cell_without_magics_is_a_default_framework_job_with_code_unchanged() {
    let code = "import os\r\nprint('é 🚀')\r\n\r\n  x = 1 % 2\n";
    let cell = job(code);
    assert_eq!(cell.params, JobParams::default());
    assert_eq!(cell.code, code);
}

#[test]
fn blanking_keeps_line_count_and_crlf_line_ends() {
    let code = "%framework=pytorch\r\n%master=1\r\nprint(1)\r\n%dryrun";
    let cell = job(code);
    assert_eq!(cell.code, "\r\n\r\nprint(1)\r\n");
    assert_eq!(cell.code.split('\n').count(), code.split('\n').count());
}

#[test]
fn magics_may_appear_anywhere_in_the_cell() {
    let cell = job("import os\n%framework=pytorch\nx = 1\n%worker=3\n");
    assert_eq!(cell.params.framework.as_deref(), Some("pytorch"));
    assert_eq!(roles(&cell.params), [("worker", 3, Resources::default(), 4)]);
    assert_eq!(cell.code, "import os\n\nx = 1\n\n");
}

#[test]
fn a_magic_inside_a_triple_quoted_string_stays_code() {
    let code = "doc = \"\"\"\n%worker=2\n!pip install x\n%%bash\n\"\"\"\n%cpu=1\ns = '''\n%wroker=1\n'''";
    let cell = job(code);
    assert!(cell.params.roles.is_empty());
    assert_eq!(cell.params.resources.cpu, q("1"));
    assert_eq!(cell.code, "doc = \"\"\"\n%worker=2\n!pip install x\n%%bash\n\"\"\"\n\ns = '''\n%wroker=1\n'''");
}

#[test]
fn a_line_that_opens_and_closes_a_triple_quoted_string_does_not_hide_the_next_magic() {
    let cell = job("x = \"\"\"one line\"\"\"\n%cpu=2\ny = '''a''' + \"\"\"b\"\"\"\n%memory=1Gi");
    assert_eq!(cell.params.resources, res(Some("2"), Some("1Gi"), None));
}

#[test]
fn an_indented_percent_line_is_code() {
    let cell = job("x = (10\n    %3)\n");
    assert_eq!(cell.code, "x = (10\n    %3)\n");
}

// ---- roles and resources ----

#[test]
fn roleless_frameworks_take_resources_on_their_own_line() {
    let cell = job("%cpu=2;%memory=4Gi;%gpu=1\nprint(1)");
    assert_eq!(cell.params.resources, res(Some("2"), Some("4Gi"), Some(1)));
    let cell = job("%framework=trainjob\n%nodes=2\n%cpu=1\n%gpu=2\n%runtime=torch-distributed");
    assert_eq!(cell.params.nodes, Some(2));
    assert_eq!(cell.params.runtime.as_deref(), Some("torch-distributed"));
    assert_eq!(cell.params.resources, res(Some("1"), None, Some(2)));
}

#[test]
fn spaces_around_separators_and_a_trailing_semicolon_are_tolerated() {
    let cell = job("%framework = tensorflow\n%worker = 2 ; %cpu = 1 ;\n");
    assert_eq!(roles(&cell.params), [("worker", 2, res(Some("1"), None, None), 2)]);
}

#[test]
fn roles_come_from_the_effective_framework_even_when_it_is_given_later() {
    let cell = job("%chief=1;%cpu=4\n%evaluator=1\n%framework=tensorflow");
    assert_eq!(cell.params.roles.len(), 2);
    let cell = job_with("%ps=1\n%worker=2", "tensorflow");
    assert_eq!(cell.params.framework, None, "the default is applied by the plan");
    assert_eq!(cell.params.roles.len(), 2);
    let cell = job("%framework=mpi\n%launcher=1;%cpu=1\n%worker=4;%gpu=1");
    assert_eq!(roles(&cell.params)[1], ("worker", 4, res(None, None, Some(1)), 3));
}

#[test]
fn roles_are_read_from_the_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let text = include_str!("../../../base-images/pytorch.yaml")
        .replace("name: pytorch", "name: custom")
        .replace("magic: master", "magic: trainer");
    std::fs::write(dir.path().join("custom.yaml"), text).unwrap();
    let all = Frameworks::with_dir(dir.path()).unwrap();
    let Ok(Cell::Job(cell)) = parse("%framework=custom\n%trainer=3", &all, "python") else { panic!() };
    assert_eq!(cell.params.roles[0].role, "trainer");
    let e = parse("%framework=custom\n%master=1", &all, "python").unwrap_err();
    assert!(e.message.contains("custom has no master role; its roles are trainer, worker"), "{e}");
}

#[test]
fn a_zero_count_is_accepted_for_the_plan_to_judge() {
    assert_eq!(job("%framework=pytorch\n%worker=0").params.roles[0].replicas, 0);
}

#[test]
fn the_same_resource_may_differ_between_roles_but_not_within_one() {
    let cell = job("%framework=tensorflow\n%ps=1;%cpu=1\n%worker=1;%cpu=2");
    assert_eq!(cell.params.roles[1].resources.cpu, q("2"));
    err_at("%framework=tensorflow\n%worker=1;%cpu=1;%cpu=2", 2, &["%cpu for the worker role", "keep one"]);
    assert_eq!(job("%framework=tensorflow\n%worker=1;%cpu=1;%cpu=1").params.roles[0].resources.cpu, q("1"));
}

#[test]
fn a_role_the_framework_does_not_have_names_its_roles() {
    let e = err_at("%framework=pytorch\n%ps=1", 2, &["pytorch has no ps role; its roles are master, worker"]);
    assert!(e.message.contains("frameworks with a ps role: tensorflow"), "{e}");
    err_at("%ps=1\n%framework=pytorch", 1, &["pytorch has no ps role"]);
}

#[test]
fn a_role_with_the_default_framework_says_to_choose_one() {
    err_at(
        "%worker=2",
        1,
        &["python (the default framework; choose another with %framework=NAME) has no roles", "%cpu=1;%memory=2Gi", "tensorflow"],
    );
    let e = err_with("%master=1", "tensorflow");
    assert!(e.message.contains("tensorflow (the default framework") && e.message.contains("chief, ps, worker, evaluator"), "{e}");
    err_at("%framework=trainjob\n%worker=2", 2, &["trainjob has no roles (use %nodes=N for the node count)"]);
}

#[test]
fn an_unknown_default_framework_leaves_roles_to_the_plan() {
    assert_eq!(job_with("%worker=2", "tensorfow").params.roles.len(), 1);
}

#[test]
fn a_role_must_be_first_on_its_line() {
    err_at("%framework=tensorflow\n%cpu=1;%worker=2", 2, &["role %worker must be the first magic of its line", "%worker=2;%cpu=1"]);
}

#[test]
fn a_role_given_twice_is_an_error_even_with_the_same_count() {
    err_at("%framework=tensorflow\n%worker=2\n\n%worker=2", 4, &["worker role is already given on line 2", "give each role once"]);
}

#[test]
fn resources_before_a_role_say_to_put_them_after_one() {
    err_at("%framework=tensorflow\n%cpu=1\n%worker=2", 2, &["%cpu must follow a role on the same line", "%worker=2;%cpu=", "chief, ps, worker, evaluator"]);
    err_with("%memory=1Gi\n%worker=1", "pytorch");
    err_at("%framework=pytorch;%gpu=1", 1, &["%gpu must follow a role", "%master=2;%gpu="]);
}

#[test]
fn the_earliest_failing_line_is_reported() {
    err_at("%framework=tensorflow\n%master=1\n%cpu=1", 2, &["no master role"]);
    err_at("%framework=tensorflow\n%cpu=1\n%master=1", 2, &["must follow a role"]);
}

#[test]
fn bad_numbers_and_quantities_say_what_to_write() {
    err_at("%framework=tensorflow\n%worker=two", 2, &["bad number for %worker", "\"two\" is not a whole number", "%worker=2"]);
    err_at("%framework=tensorflow\n%worker=-1", 2, &["bad number"]);
    err_at("%framework=tensorflow\n%worker=99999999999", 2, &["too large"]);
    err_at("%memory=2gb", 1, &["bad quantity for %memory", "unknown suffix \"gb\"", "(e.g. %memory=4Gi)"]);
    err_at("%cpu=lots", 1, &["bad quantity for %cpu", "does not start with a number"]);
    err_at("%gpu=0.5", 1, &["bad number for %gpu"]);
}

// ---- TrainJob magics ----

#[test]
fn nodes_and_runtime_are_for_trainjob_only() {
    err_at("%framework=pytorch\n%nodes=2", 2, &["%nodes is only for TrainJob frameworks (trainjob)", "%framework=trainjob", "master, worker"]);
    err_at("%runtime=torch-distributed", 1, &["%runtime is only for TrainJob frameworks", "python (the default framework"]);
    err_at("%framework=trainjob\n%nodes=0", 2, &["at least one node"]);
    err_at("%framework=trainjob\n%runtime=Torch", 2, &["not a valid runtime name"]);
}

// ---- every setting ----

#[test]
fn framework_names_are_checked_and_case_is_ignored() {
    assert_eq!(job("%framework=PyTorch").params.framework.as_deref(), Some("pytorch"));
    let e = err_at("%framework=tensorfow", 1, &["unknown framework \"tensorfow\"", "did you mean tensorflow?"]);
    assert!(e.message.contains("jax, mpi, paddle, python, pytorch, tensorflow, trainjob, xgboost"), "{e}");
}

#[test]
fn clean_policy_is_case_insensitive() {
    assert_eq!(job("%cleanPolicy=All").params.clean_policy, Some(CleanPolicy::All));
    assert_eq!(job("%cleanPolicy=NONE").params.clean_policy, Some(CleanPolicy::None));
    assert_eq!(job("%cleanPolicy=All\n%cleanPolicy=all").params.clean_policy, Some(CleanPolicy::All), "same value twice");
}

#[test]
fn run_settings() {
    let p = job("%backend=local;%provider=configmap;%onInterrupt=detach\n%namespace=team-a;%name=mnist\n%dryrun").params;
    assert_eq!(p.backend, Some(BackendKind::Local));
    assert_eq!(p.provider, Some(Provider::ConfigMap));
    assert_eq!(p.on_interrupt, Some(OnInterrupt::Detach));
    assert_eq!((p.namespace.as_deref(), p.name.as_deref()), (Some("team-a"), Some("mnist")));
    assert!(p.dryrun);
    let p = job("%backend=Kubernetes;%provider=image;%onInterrupt=delete").params;
    assert_eq!((p.backend, p.provider, p.on_interrupt), (Some(BackendKind::Kubernetes), Some(Provider::Image), Some(OnInterrupt::Delete)));
    err_at("%backend=docker", 1, &["bad value for %backend", "not one of local, kubernetes"]);
    err_at("%provider=s3", 1, &["not one of image, configmap"]);
    err_at("%onInterrupt=kill", 1, &["not one of delete, detach"]);
    err_at("%namespace=Team_A", 1, &["not a valid namespace", "lowercase"]);
    err_at(&format!("%name={}", "a".repeat(41)), 1, &["at most 40"]);
}

#[test]
fn image_settings() {
    let p = job("%base=python:3.12-slim\n%image=localhost:5000/team/train:v1").params;
    assert_eq!(p.base.as_deref(), Some("python:3.12-slim"));
    assert_eq!(p.image.as_deref(), Some("localhost:5000/team/train:v1"));
    let digest = format!("%base=python@sha256:{}", "a".repeat(64));
    assert!(job(&digest).params.base.is_some(), "a base may be pinned by digest");
    err_at(&format!("%image=reg/x@sha256:{}", "a".repeat(64)), 1, &["names a digest", "REPOSITORY[:TAG]"]);
    err_at("%base=Python:3", 1, &["lowercase"]);
    err_at("%image=a b", 1, &["not a valid image reference"]);
}

#[test]
fn packages_and_index() {
    let p = job("%packages=pandas, scikit-learn==1.5.2\n%packages=torch[cuda]>=2,pandas\n%pipIndexUrl=https://pypi.example.com/simple").params;
    assert_eq!(p.packages, ["pandas", "scikit-learn==1.5.2", "torch[cuda]>=2"]);
    assert_eq!(p.pip_index_url.as_deref(), Some("https://pypi.example.com/simple"));
    err_at("%packages=a,,b", 1, &["empty entry"]);
    err_at("%packages=-r requirements.txt", 1, &["pip option", "%pipIndexUrl="]);
    err_at("%pipIndexUrl=ftp://x/simple", 1, &["not an http(s) URL"]);
}

#[test]
fn env_is_repeatable_and_splits_on_the_first_equals() {
    let p = job("%env=A=1\n%env=URL=http://h/?q=1;%env=EMPTY=\n%env=A=1").params;
    assert_eq!(p.env, [("A".into(), "1".into()), ("URL".into(), "http://h/?q=1".into()), ("EMPTY".into(), String::new())]);
    err_at("%env=A=1\n%env=A=2", 2, &["A is already set to \"1\""]);
    err_at("%env=1A=x", 1, &["not a valid environment variable name"]);
    err_at("%env=NOVALUE", 1, &["has no '='", "%env=KEY=VALUE"]);
}

#[test]
fn pod_settings() {
    let code = "%volume=datasets:/data\n%secretEnv=TOKEN=wandb:api-key\n%nodeSelector=gpu-type=a100\n\
                %toleration=nvidia.com/gpu:NoSchedule;%toleration=dedicated=ml:noexecute\n\
                %serviceAccount=trainer;%queue=team-a\n%label=team=vision;%annotation=example.com/owner=Alice Smith\n\
                %files=data/train.csv, configs";
    let p = job(code).params;
    assert_eq!(p.volumes, [Volume { claim: "datasets".into(), path: "/data".into() }]);
    assert_eq!(p.secret_env, [SecretEnv { var: "TOKEN".into(), secret: "wandb".into(), key: "api-key".into() }]);
    assert_eq!(p.node_selector, [("gpu-type".into(), "a100".into())]);
    assert_eq!(
        p.tolerations,
        [
            Toleration { key: "nvidia.com/gpu".into(), value: None, effect: "NoSchedule".into() },
            Toleration { key: "dedicated".into(), value: Some("ml".into()), effect: "NoExecute".into() },
        ]
    );
    assert_eq!((p.service_account.as_deref(), p.queue.as_deref()), (Some("trainer"), Some("team-a")));
    assert_eq!(p.labels, [("team".into(), "vision".into())]);
    assert_eq!(p.annotations, [("example.com/owner".into(), "Alice Smith".into())]);
    assert_eq!(p.files, ["data/train.csv", "configs"]);
}

#[test]
fn pod_setting_errors() {
    err_at("%volume=data", 1, &["has no ':'", "CLAIM:/path"]);
    err_at("%volume=data:relative", 1, &["not a mount path"]);
    err_at("%volume=a:/d\n%volume=b:/d", 2, &["already the mount path of claim a"]);
    err_at("%secretEnv=TOKEN=wandb", 1, &["VAR=SECRET:KEY"]);
    err_at("%env=T=1\n%secretEnv=T=s:k", 2, &["already set by %env"]);
    err_at("%toleration=gpu:Sometimes", 1, &["not one of NoSchedule, PreferNoSchedule, NoExecute"]);
    err_at("%toleration=gpu", 1, &["KEY[=VALUE]:EFFECT"]);
    err_at("%label=team=a b", 1, &["not a valid label value"]);
    err_at("%label=bad key=x", 1, &["not a valid key"]);
    err_at("%label=team=a\n%label=team=b", 2, &["label team is already set"]);
    err_at("%nodeSelector=x", 1, &["has no '='"]);
    err_at("%serviceAccount=Admin", 1, &["not a valid service account name"]);
    err_at("%queue=Q", 1, &["not a valid queue name"]);
    err_at("%files=/etc/passwd", 1, &["absolute path"]);
    err_at("%files=../secrets", 1, &["leaves the notebook's directory"]);
}

#[test]
fn the_same_magic_twice_with_different_values_is_an_error() {
    err_at("%framework=tensorflow\n%worker=1\n%framework=pytorch", 3, &["%framework is already \"tensorflow\" (line 1)", "keep one"]);
    err_at("%cleanPolicy=all\n%cleanPolicy=running", 2, &["%cleanPolicy is already \"all\""]);
    err_at("%cpu=1\n%cpu=2", 2, &["%cpu is already \"1\""]);
    assert_eq!(job("%namespace=a\n%namespace=a").params.namespace.as_deref(), Some("a"));
}

// ---- form errors ----

#[test]
fn a_missing_value_says_what_to_write() {
    err_at("%framework=tensorflow\n%worker=", 2, &["%worker needs a value after '='", "%worker=2"]);
    err_at("%namespace", 1, &["%namespace needs a value", "%namespace=team-a"]);
    err_at("%framework=", 1, &["needs a value", "%framework=tensorflow"]);
}

#[test]
fn dryrun_takes_no_value() {
    err_at("%dryrun=true", 1, &["%dryrun takes no value", "write just %dryrun"]);
    err_at("%dryrun now", 1, &["takes no value"]);
    assert!(job("%dryrun\n%dryrun").params.dryrun);
}

#[test]
fn malformed_magic_lines() {
    err_at("%worker=2;;%cpu=1", 1, &["empty magic between two ';'"]);
    err_at("%cpu=1;memory=2Gi", 1, &["does not start with %", "%memory=2Gi"]);
    err_at("x = 1\n%", 2, &["must be followed by a magic name"]);
    err_at("% cpu=1", 1, &["must be followed by a magic name"]);
    err_at("%cpu:1", 1, &["unexpected \":1\" after %cpu", "e.g. %cpu=500m"]);
    err_at("%cpu 1", 1, &["%cpu takes its value after '='"]);
}

#[test]
fn unknown_magics_suggest_the_nearest() {
    err_at("%framework=tensorflow\n%wroker=2", 2, &["unknown magic %wroker", "did you mean %worker=?"]);
    err_at("%cpus=1", 1, &["did you mean %cpu=?"]);
    err_at("%clean_policy=all", 1, &["did you mean %cleanPolicy=?"]);
    err_at("%mem=1Gi", 1, &["did you mean %memory=?"]);
    err_at("%dryrn", 1, &["did you mean %dryrun?"]);
    err_at("%xyzzy=1", 1, &["unknown magic %xyzzy", "%help lists the magics"]);
}

// ---- IPython habits ----

#[test]
fn ipython_magics_say_what_to_use_instead() {
    err_at("%pip install numpy pandas", 1, &["%packages=numpy,pandas"]);
    err_at("import x\n%conda install -y scipy", 2, &["%packages=scipy"]);
    err_at("%matplotlib inline", 1, &["plots are not shown from jobs", "savefig"]);
    err_at("%time f()", 1, &["perf_counter"]);
    err_at("%timeit f()", 1, &["perf_counter"]);
    err_at("%load_ext autoreload", 1, &["import the library"]);
    err_at("%run train.py", 1, &["%files="]);
    err_at("%cd /data", 1, &["working directory", "%files="]);
    err_at("%env FOO=bar", 1, &["%env=KEY=VALUE"]);
    err_at("%env", 1, &["%env=KEY=VALUE"]);
    err_at("%who", 1, &["IPython magic", "%help"]);
}

#[test]
fn cell_magics_and_shell_lines_are_errors_with_advice() {
    err_at("%%time\nf()", 1, &["perf_counter"]);
    err_at("%%bash\nls", 1, &["shell commands do not run in ciao jobs", "%packages="]);
    err_at("%%writefile utils.py\ndef f(): pass", 1, &["%module=NAME"]);
    err_at("%%html\n<b>x</b>", 1, &["%%html is an IPython cell magic"]);
    err_at("%%\nx", 1, &["cell magic"]);
    err_at("import os\n!pip install torch", 2, &["shell commands do not run in ciao jobs", "%packages="]);
}

// ---- modules ----

#[test]
fn a_module_cell_keeps_its_code_with_magic_lines_blanked() {
    let cell = parse("# helpers\n%module=utils\ndef f():\n    return 1\n", fw(), "python").unwrap();
    assert_eq!(cell, Cell::Module { name: "utils".into(), code: "# helpers\n\ndef f():\n    return 1\n".into() });
}

#[test]
fn a_module_takes_no_other_magics() {
    err_at("%module=utils\n%worker=2\ndef f(): pass", 1, &["takes no other magics", "move %worker (line 2)"]);
    err_at("%dryrun\n%module=utils\nx=1", 2, &["move %dryrun (line 1)"]);
    err_at("%module=utils\n# nothing", 1, &["has no code"]);
    err_at("%module=my-utils\nx=1", 1, &["not a Python module name"]);
    err_at("%module=a\n%module=b\nx=1", 2, &["%module is already \"a\""]);
}

// ---- commands ----

#[test]
fn job_commands_parse_alone_in_their_cell() {
    let cmd = |code: &str| match parse(code, fw(), "python") {
        Ok(Cell::Command(c)) => c,
        other => panic!("{code:?} → {other:?}"),
    };
    assert_eq!(cmd("%jobs"), JobCommand::Jobs);
    assert_eq!(cmd("\n# which jobs?\n%jobs\n\n"), JobCommand::Jobs);
    assert_eq!(cmd("%logs mnist-7f3c"), JobCommand::Logs { name: "mnist-7f3c".into(), follow: false });
    assert_eq!(cmd("%logs mnist-7f3c --follow"), JobCommand::Logs { name: "mnist-7f3c".into(), follow: true });
    assert_eq!(cmd("%logs -f mnist-7f3c"), JobCommand::Logs { name: "mnist-7f3c".into(), follow: true });
    assert_eq!(cmd("%attach mnist-7f3c"), JobCommand::Attach { name: "mnist-7f3c".into() });
    assert_eq!(cmd("%delete mnist-7f3c"), JobCommand::Delete { name: "mnist-7f3c".into() });
    assert_eq!(cmd("%modules"), JobCommand::Modules);
    assert_eq!(cmd("%help"), JobCommand::Help);
    assert_eq!(cmd("%help framework"), JobCommand::HelpOn("framework".into()));
    assert_eq!(cmd("%help %worker="), JobCommand::HelpOn("worker".into()));
}

#[test]
fn help_takes_at_most_one_magic_name() {
    err_at("%help framework worker", 1, &["at most one magic's name", "%help framework"]);
    err_at("%help %", 1, &["needs a magic's name"]);
}

#[test]
fn help_on_a_magic_is_its_documentation_or_the_nearest_name() {
    let f = Frameworks::embedded();
    let doc = crate::interpreter::magic_help("framework", f).unwrap();
    let text = doc["text/plain"].as_str().unwrap();
    assert!(text.contains("%framework=") && text.contains("tensorflow") && text.contains("trainjob"), "{text}");
    let role = crate::interpreter::magic_help("ps", f).unwrap();
    assert!(role["text/plain"].as_str().unwrap().contains("%ps="), "{role:?}");
    let e = crate::interpreter::magic_help("framwork", f).unwrap_err();
    assert!(e.contains("no magic is called %framwork") && e.contains("did you mean %framework?"), "{e}");
}

#[test]
fn a_command_mixed_with_code_or_magics_is_an_error() {
    err_at("%jobs\nprint(1)", 1, &["%jobs is a command and goes in a cell of its own", "line 2"]);
    err_at("%framework=pytorch\n%logs x", 2, &["cell of its own", "line 1"]);
    err_at("%jobs;%dryrun", 1, &["goes alone on its line"]);
    err_at("%jobs\n%modules", 2, &["one command", "%jobs is already on line 1"]);
    err_at("%module=m\n%jobs", 2, &["cell of its own", "line 1"]);
}

#[test]
fn command_arguments_are_checked() {
    err_at("%logs", 1, &["needs the job's name", "%logs NAME [--follow]"]);
    err_at("%logs a b", 1, &["one job name"]);
    err_at("%logs a --tail", 1, &["no option --tail"]);
    err_at("%attach", 1, &["%attach NAME"]);
    err_at("%delete Bad_Name", 1, &["not a valid job name"]);
    err_at("%jobs all", 1, &["takes no arguments"]);
    err_at("%jobs=1", 1, &["takes no '='"]);
}

// ---- the error type ----

#[test]
fn errors_display_line_text_and_fix_and_become_cell_errors() {
    let e = err_with("x = 1\n%wroker=2  ", "tensorflow");
    assert_eq!(e.to_string(), "line 2: %wroker=2: unknown magic %wroker: did you mean %worker=? (%help lists the magics)");
    let c: CellError = e.into();
    assert_eq!(c.ename, "MagicError");
    assert!(c.evalue.starts_with("line 2: "));
}
