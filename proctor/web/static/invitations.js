// The invitation slips' print button (no inline script: the console's CSP allows only this file).
"use strict";
document.getElementById("print").addEventListener("click", () => window.print());
