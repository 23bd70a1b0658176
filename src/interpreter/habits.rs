//! IPython magics and shell escapes people paste out of habit, and what to
//! write in ciao instead. A ciao cell runs as a job, not in an IPython
//! kernel, so none of them would do what the user expects.

/// Advice for `!command` lines.
pub(crate) const SHELL: &str = "shell commands do not run in ciao jobs: use %packages=NAME[,NAME…] to pip-install \
     packages, and Python's subprocess module in the code for other commands";

/// Advice for `%name args` when `name` is an IPython line magic, or `None`.
pub(crate) fn line_magic(name: &str, args: &str) -> Option<String> {
    let msg = match name {
        "pip" | "conda" | "mamba" | "micromamba" => {
            let pkgs: Vec<&str> = args
                .split_whitespace()
                .filter(|a| !a.starts_with('-') && !matches!(*a, "install" | "add"))
                .collect();
            let list = if pkgs.is_empty() { "NAME[,NAME…]".to_string() } else { pkgs.join(",") };
            format!("%{name} runs in an IPython kernel, not in a ciao job: write %packages={list} to install packages in the job")
        }
        "matplotlib" | "pylab" => {
            "plots are not shown from jobs: save figures to files (plt.savefig) on a %volume= or print results instead"
                .to_string()
        }
        "time" | "timeit" | "prun" => {
            format!("%{name} times code in an IPython kernel: time it in Python instead (time.perf_counter())")
        }
        "load_ext" | "reload_ext" | "unload_ext" | "autoreload" | "aimport" => {
            "IPython extensions do not run in ciao jobs: import the library in the cell's code".to_string()
        }
        "run" => "%run runs a script in an IPython kernel: ship it with %files=SCRIPT and import or exec it in the \
                  code, or keep shared code with %module=NAME"
            .to_string(),
        "cd" | "pwd" | "ls" | "bookmark" | "dhist" | "pushd" | "popd" => {
            format!("%{name} works on the kernel's directory; a job runs in its image's working directory: use paths relative to it, and %files= to ship local files")
        }
        "env" | "set_env" => {
            "IPython's %env sets the kernel's environment: write %env=KEY=VALUE to set a variable in the job".to_string()
        }
        "sx" | "system" | "sc" => SHELL.to_string(),
        "who" | "whos" | "who_ls" | "reset" | "reset_selective" | "store" | "xdel" | "history" | "recall" | "rerun"
        | "debug" | "pdb" | "xmode" | "config" | "precision" | "capture" | "tensorboard" | "load" | "save"
        | "macro" | "psearch" | "pinfo" | "pinfo2" | "magic" | "lsmagic" | "alias" | "unalias" | "killbgscripts" => {
            format!("%{name} is an IPython magic; ciao runs each cell as a job, so it has no effect here (%help lists ciao's magics)")
        }
        _ => return None,
    };
    Some(msg)
}

/// Advice for a `%%name` cell magic.
pub(crate) fn cell_magic(name: &str) -> String {
    match name {
        "bash" | "sh" | "script" | "system" | "sx" => SHELL.to_string(),
        "writefile" | "file" => "%%writefile writes a file in an IPython kernel: keep this code as a module with \
                                 %module=NAME, or ship existing files with %files=PATH"
            .to_string(),
        "time" | "timeit" | "prun" => {
            format!("%%{name} times code in an IPython kernel: time it in Python instead (time.perf_counter())")
        }
        "capture" => "%%capture is an IPython magic: a job's output is its replicas' logs, shown in the cell".to_string(),
        "" => "a line starting with %% is an IPython cell magic; ciao's magics are line magics like %framework=NAME \
               (%help lists them)"
            .to_string(),
        other => format!(
            "%%{other} is an IPython cell magic; ciao runs cells as jobs and has only line magics like %framework=NAME (%help lists them)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_install_suggests_packages_with_the_names() {
        let m = line_magic("pip", "install -U numpy pandas").unwrap();
        assert!(m.contains("%packages=numpy,pandas"), "{m}");
        assert!(line_magic("conda", "").unwrap().contains("%packages=NAME"));
    }

    #[test]
    fn unknown_names_have_no_advice() {
        assert_eq!(line_magic("wroker", ""), None);
    }

    #[test]
    fn cell_magics_say_what_to_use() {
        assert!(cell_magic("bash").contains("subprocess"));
        assert!(cell_magic("writefile").contains("%module=NAME"));
        assert!(cell_magic("html").contains("%%html is an IPython cell magic"));
        assert!(cell_magic("time").contains("perf_counter"));
    }
}
