"""Reports: terminal tables and progress now; JSON and HTML reports with the optimize search."""
