//! A repository must not reach outside the plugin's grants through its own files: a linked
//! worktree's git dir and `commondir`, or `objects/info/alternates` (gix reads objects there).

use std::path::{Path, PathBuf};

use super::GitRepo;

/// How deep `objects/info/alternates` chains are followed when checking them.
const MAX_ALTERNATES_DEPTH: usize = 5;

impl GitRepo {
    /// Refuses a repository whose git dir, common dir (`commondir` of a linked worktree) or
    /// object alternates (`objects/info/alternates`, followed transitively) lie outside what
    /// `granted` accepts: gix would read objects from there. The error carries the path outside.
    pub fn confined(&self, granted: impl Fn(&Path) -> bool) -> Result<(), (PathBuf, String)> {
        let outside = |what: &str, p: &Path| {
            Err((
                p.to_path_buf(),
                format!(
                    "{} of repository `{}` is `{}`, outside the plugin's git grants; grant that directory too",
                    what,
                    self.path.display(),
                    p.display()
                ),
            ))
        };
        for (what, dir) in [("the git dir", self.repo.git_dir()), ("the common dir", self.repo.common_dir())] {
            let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            if !granted(&real) {
                return outside(what, &real);
            }
        }
        let mut pending = vec![(self.repo.common_dir().join("objects"), 0usize)];
        while let Some((objects, depth)) = pending.pop() {
            let Ok(text) = std::fs::read_to_string(objects.join("info/alternates")) else { continue };
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                let alt = objects.join(line);
                let real = std::fs::canonicalize(&alt).unwrap_or(alt);
                if !granted(&real) {
                    return outside("an object alternate", &real);
                }
                if depth + 1 >= MAX_ALTERNATES_DEPTH {
                    return Err((real, format!("object alternates of `{}` nest deeper than {MAX_ALTERNATES_DEPTH}", self.path.display())));
                }
                pending.push((real, depth + 1));
            }
        }
        Ok(())
    }
}
