use super::*;

fn fw() -> &'static Frameworks {
    Frameworks::embedded()
}

/// Completes at the `|` in `code` (removed), counting in code points.
fn at(code: &str) -> Completion {
    let pos = code.chars().position(|c| c == '|').expect("a | marks the cursor");
    complete(&code.replacen('|', "", 1), pos, fw())
}

fn doc(code: &str) -> Option<String> {
    let pos = code.chars().position(|c| c == '|').expect("a | marks the cursor");
    inspect(&code.replacen('|', "", 1), pos, fw()).map(|b| b["text/plain"].as_str().unwrap().to_string())
}

#[test]
fn magic_names_complete_from_their_prefix() {
    let c = at("%fr|");
    assert_eq!(c.matches, ["%framework="]);
    assert_eq!((c.cursor_start, c.cursor_end), (0, 3));
    assert_eq!(at("%dr|").matches, ["%dryrun"]);
    assert_eq!(at("%lo|").matches, ["%logs "]);
    assert_eq!(at("%jo|").matches, ["%jobs"]);
    assert_eq!(at("%CLEAN|").matches, ["%cleanPolicy="]);
    assert!(at("%zz|").matches.is_empty());
}

#[test]
fn a_lone_percent_offers_every_magic() {
    let c = at("%|");
    assert!(c.matches.contains(&"%framework=".to_string()));
    assert!(c.matches.contains(&"%dryrun".to_string()));
    assert!(c.matches.contains(&"%jobs".to_string()));
    assert!(c.matches.contains(&"%ps=".to_string()), "every framework's roles when the cell names none");
    assert!(c.matches.contains(&"%launcher=".to_string()));
    assert!(!c.matches.iter().any(|m| m.contains('<')), "the role row is not offered as such");
    assert_eq!((c.cursor_start, c.cursor_end), (0, 1));
}

#[test]
fn role_magics_follow_the_cells_framework() {
    let c = at("%framework=pytorch\n%|");
    let roles: Vec<_> = c.matches.iter().filter(|m| ["%master=", "%worker=", "%ps=", "%chief="].contains(&m.as_str())).collect();
    assert_eq!(roles, ["%master=", "%worker="]);
    assert_eq!(at("%framework=tensorflow\n%p|").matches, ["%ps=", "%packages=", "%pipIndexUrl=", "%provider="]);
    assert!(at("%framework=python\n%w|").matches.is_empty(), "python has no roles");
}

#[test]
fn after_a_semicolon_only_settings_and_resources_are_offered() {
    let c = at("%worker=2;%|");
    assert!(c.matches.contains(&"%cpu=".to_string()) && c.matches.contains(&"%memory=".to_string()));
    assert!(!c.matches.contains(&"%worker=".to_string()) && !c.matches.contains(&"%jobs".to_string()));
    let c = at("%worker=2;%m|");
    assert_eq!(c.matches, ["%memory="]);
    assert_eq!((c.cursor_start, c.cursor_end), (10, 12));
    let c = at("%worker=2; %me|");
    assert_eq!((c.cursor_start, c.cursor_end), (11, 14));
}

#[test]
fn completing_inside_a_name_replaces_it_and_its_equals_sign() {
    let c = at("%fr|amework=tensorflow");
    assert_eq!(c.matches, ["%framework="]);
    assert_eq!((c.cursor_start, c.cursor_end), (0, 11));
}

#[test]
fn values_complete_after_the_equals_sign() {
    let c = at("%framework=|");
    assert_eq!(c.matches, ["jax", "mpi", "paddle", "python", "pytorch", "tensorflow", "trainjob", "xgboost"]);
    assert_eq!((c.cursor_start, c.cursor_end), (11, 11));
    let c = at("%framework=py|");
    assert_eq!(c.matches, ["python", "pytorch"]);
    assert_eq!((c.cursor_start, c.cursor_end), (11, 13));
    assert_eq!(at("%framework=T|ensor").matches, ["tensorflow", "trainjob"]);
    assert_eq!(at("%framework=T|ensor").cursor_end, 17, "the whole value is replaced");
    assert_eq!(at("%cleanPolicy=|").matches, ["all", "running", "none"]);
    assert_eq!(at("%cleanPolicy=r|").matches, ["running"]);
    assert_eq!(at("%backend=|").matches, ["local", "kubernetes"]);
    assert_eq!(at("%provider=c|").matches, ["configmap"]);
    assert_eq!(at("%onInterrupt=de|").matches, ["delete", "detach"]);
    assert_eq!(at("%worker=2;%cpu=1\n%framework=tensorflow;%cleanPolicy=n|").matches, ["none"]);
}

#[test]
fn toleration_effects_complete_after_the_colon() {
    let c = at("%toleration=nvidia.com/gpu:|");
    assert_eq!(c.matches, ["NoSchedule", "PreferNoSchedule", "NoExecute"]);
    assert_eq!((c.cursor_start, c.cursor_end), (27, 27));
    assert_eq!(at("%toleration=a=b:no|").matches, ["NoSchedule", "NoExecute"]);
    assert!(at("%toleration=nvidia|").matches.is_empty(), "the key is free text");
}

#[test]
fn free_text_values_and_code_get_nothing() {
    for code in ["%namespace=te|", "%worker=|", "import o|s", "x = 1 %fr|", "|", "  %fr|", "s = '''\n%fr|", "%%ti|", "!pi|"] {
        let c = at(code);
        assert!(c.matches.is_empty(), "{code:?} → {c:?}");
        let pos = code.chars().position(|c| c == '|').unwrap();
        assert_eq!((c.cursor_start, c.cursor_end), (pos, pos), "{code:?}");
    }
}

#[test]
fn offsets_count_code_points_not_bytes() {
    let c = at("print('héllo 🚀')\n%fr|");
    assert_eq!(c.matches, ["%framework="]);
    assert_eq!((c.cursor_start, c.cursor_end), (17, 20));
    let c = at("# 日本語 ✨\n%framework=py|");
    assert_eq!((c.cursor_start, c.cursor_end), (19, 21));
    let c = at("s = '🚀🚀'\n%toleration=x:N|");
    assert_eq!((c.cursor_start, c.cursor_end), (23, 24));
}

#[test]
fn a_cursor_past_the_end_is_clamped() {
    assert_eq!(complete("%fr", 99, fw()), complete("%fr", 3, fw()));
    assert_eq!(complete("%fr", 99, fw()).matches, ["%framework="]);
    assert_eq!(complete("x = 1", 99, fw()), Completion { matches: Vec::new(), cursor_start: 5, cursor_end: 5 });
}

#[test]
fn inspect_documents_the_magic_under_the_cursor() {
    let d = doc("%frame|work=tensorflow").unwrap();
    assert!(d.starts_with("%framework=NAME"), "{d}");
    assert!(d.contains("tensorflow   TensorFlow distributed training (TFJob)"), "{d}");
    let d = doc("%framework=tensorflow|").unwrap();
    assert!(d.contains("Example: %framework=tensorflow"), "{d}");
    let d = doc("%cleanPolicy|=all").unwrap();
    assert!(d.contains("Values: all, running, none"), "{d}");
    let d = doc("%ps=1;%cp|u=1").unwrap();
    assert!(d.starts_with("%cpu=QUANTITY"), "{d}");
    let d = doc("%dryrun|").unwrap();
    assert!(d.contains("without building or submitting"), "{d}");
    let d = doc("%logs| x").unwrap();
    assert!(d.starts_with("%logs NAME [--follow]"), "{d}");
}

#[test]
fn inspect_of_a_role_lists_the_frameworks_roles() {
    let d = doc("%framework=pytorch\n%wor|ker=2").unwrap();
    assert!(d.starts_with("%worker=N[;%cpu=Q;%memory=Q;%gpu=N]"), "{d}");
    assert!(d.contains("The worker role of pytorch: replica type Worker, 0 replica(s) when not given."), "{d}");
    assert!(d.contains("Roles of pytorch: %master=N (Master, default 1), %worker=N (Worker, default 0)"), "{d}");
    let d = doc("%framework=pytorch\n%p|s=2").unwrap();
    assert!(d.contains("pytorch has no ps role."), "{d}");
    let d = doc("%p|s=2").unwrap();
    assert!(d.contains("Frameworks with a ps role: tensorflow (PS, default 0)"), "{d}");
}

#[test]
fn inspect_gives_markdown_too() {
    let b = inspect("%volume=a:/d", 3, fw()).unwrap();
    assert!(b["text/markdown"].as_str().unwrap().starts_with("`%volume=CLAIM:/path`"));
}

#[test]
fn inspect_is_none_off_magics() {
    for code in ["import o|s", "|", "%wroker|=2", "s = '''\n%work|er=2\n'''", "%%ti|me", "%worker=2;  |  ;%cpu=1"] {
        assert_eq!(doc(code), None, "{code:?}");
    }
}
