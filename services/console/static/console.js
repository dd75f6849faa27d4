// Small behaviours that need no inline script (the policy forbids it):
// selects that submit their form when changed, and copy buttons.
document.addEventListener("change", (e) => {
  if (e.target.matches("[data-submit-on-change]")) e.target.form.submit();
});
document.addEventListener("click", (e) => {
  const b = e.target.closest("[data-copy]");
  if (!b) return;
  const src = document.getElementById(b.dataset.copy);
  if (src && navigator.clipboard) navigator.clipboard.writeText(src.textContent).then(() => { b.textContent = "Copied"; });
});
