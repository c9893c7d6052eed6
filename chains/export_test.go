package chains

// RunForTest is Main without the process: arguments, environment and
// output are the test's, and it returns the exit code.
var RunForTest = run
