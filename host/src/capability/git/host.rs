//! The WIT resources `repository` and `commit-walk` on a plugin's store: each call checks the
//! grants, the open-handle limits and the call deadline around [`GitRepo`] and [`GitWalk`].

use wasmtime::component::Resource;

use super::{GitRepo, GitWalk};
use crate::plugin::bindings::source::sam::plugin::git::{Commit, Host, HostCommitWalk, HostRepository, WalkOptions};
use crate::plugin::state::HostState;

impl Host for HostState {}

impl HostRepository for HostState {
    fn open(&mut self, path: String) -> wasmtime::Result<Result<Resource<GitRepo>, String>> {
        let real = match self.caps.check("git", &path) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let repo = match GitRepo::open(&real) {
            Ok(repo) => repo,
            Err(e) => return Ok(Err(e)),
        };
        if let Err((outside, e)) = repo.confined(|p| self.caps.is_granted("git", p)) {
            // Reported as a denial of the directory outside the grants, which is what was refused.
            self.caps.denial = Some(crate::capability::Denial { capability: "git", path: outside.display().to_string() });
            return Ok(Err(e));
        }
        if let Err(e) = self.caps.handles.open(crate::capability::Handle::GitRepo) {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(repo)?))
    }

    fn name(&mut self, self_: Resource<GitRepo>) -> wasmtime::Result<String> {
        Ok(self.table.get(&self_)?.name.clone())
    }

    fn resolve(&mut self, self_: Resource<GitRepo>, rev: String) -> wasmtime::Result<Result<String, String>> {
        let deadline = self.caps.deadline;
        crate::capability::deadline_trap(deadline, self.table.get(&self_)?.resolve(&rev).map(|id| id.to_string()))
    }

    fn walk(
        &mut self,
        self_: Resource<GitRepo>,
        options: WalkOptions,
    ) -> wasmtime::Result<Result<Resource<GitWalk>, String>> {
        let deadline = self.caps.deadline;
        let (text, plugin) = (self.text.clone(), self.caps.plugin.clone());
        let mut warn = |w: String| tracing::warn!(plugin = &*plugin, "{}", text.clean(&w));
        let walk = match crate::capability::deadline_trap(deadline, self.table.get(&self_)?.walk_logged(&options, deadline, &mut warn))? {
            Ok(w) => w,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.caps.handles.open(crate::capability::Handle::GitWalk) {
            return Ok(Err(e));
        }
        Ok(Ok(self.table.push(walk)?))
    }

    fn drop(&mut self, rep: Resource<GitRepo>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        self.caps.handles.close(crate::capability::Handle::GitRepo);
        Ok(())
    }
}

impl HostCommitWalk for HostState {
    fn next(&mut self, self_: Resource<GitWalk>, max: u32) -> wasmtime::Result<Result<Vec<Commit>, String>> {
        let deadline = self.caps.deadline;
        crate::capability::deadline_trap(deadline, self.table.get_mut(&self_)?.next_page_until(max, deadline))
    }

    fn drop(&mut self, rep: Resource<GitWalk>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        self.caps.handles.close(crate::capability::Handle::GitWalk);
        Ok(())
    }
}
